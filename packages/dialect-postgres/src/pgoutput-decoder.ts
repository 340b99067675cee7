import {
  keyOfRow,
  nativeText,
  ReplicatorError,
  type ChangeBatch,
  type ChangeEvent,
  type Row,
  type RowKey,
  type SpillFile,
} from '@mostajs/replicator-core'
import { columnDecoder } from '@mostajs/replicator-core/sql'
import { formatLsn, parsePgOutput, type PgOutputMessage, type RawTuple, type Relation } from './pgoutput.js'
import { pushEvents, type DecodeOptions, type RelationConverter } from './pgoutput-events.js'
import type { PostgresDialect } from './postgres-dialect.js'
import { typeParsers } from './postgres-types.js'
import type { ReplicationStream, StreamedTransaction } from './replication-stream.js'

/** Messages decoded between two yields to the event loop. */
const DECODE_SLICE = 1000

/** A capture read over the streaming replication protocol, and what its reader keeps. */
export interface CaptureStream {
  stream: ReplicationStream
  handedOut: bigint
  confirmed: bigint
  relations: Map<number, Relation>
  converters: Map<number, RelationConverter>
  /** Spill files handed out and not read to the end yet (removed with the stream). */
  spills: Set<SpillFile>
}

/** Turns pgoutput messages of a capture into change events, decoding values against the tables. */
export class PgOutputDecoder {
  constructor(private readonly db: PostgresDialect) {}

  /** The database of the URI, as change events name their source. */
  get databaseName(): string {
    return decodeURIComponent(new URL(this.db.config.uri).pathname.slice(1))
  }

  /**
   * pgoutput messages → change events of the transactions committed after `after`, in commit
   * order.
   */
  async decodeMessages(
    name: string,
    messages: Buffer[],
    after: bigint,
    relations: Map<number, Relation>,
    converters: Map<number, RelationConverter>,
    options: DecodeOptions,
  ): Promise<ChangeBatch> {
    const events: ChangeEvent[] = []
    let pending: ChangeEvent[] = []
    const database = this.databaseName
    // shared by the events of one transaction, completed at its commit
    let source: ChangeEvent['source'] = {
      dialect: 'postgres',
      database,
      position: { dialect: 'postgres', value: '0/0' },
      ts: 0,
    }
    let xid = 0
    let last: bigint | null = null
    let decoded = 0
    for (const data of messages) {
      // Let other work run (a batch being applied meanwhile) every DECODE_SLICE messages.
      if (++decoded % DECODE_SLICE === 0) await new Promise((resolve) => setImmediate(resolve))
      const message = parsePgOutput(data)
      switch (message.tag) {
        case 'begin':
          pending = []
          xid = message.xid
          source = { dialect: 'postgres', database, position: source.position, ts: 0 }
          break
        case 'commit': {
          last = message.endLsn // also past skipped transactions, so the slot can be advanced over them
          if (message.endLsn > after && pending.length) {
            source.position = { dialect: 'postgres', value: formatLsn(message.endLsn) }
            source.ts = message.commitTime
            const txId = String(xid)
            for (const event of pending) {
              event.txId = txId
              events.push(event)
            }
          }
          pending = []
          break
        }
        default:
          await this.decodeChange(name, message, relations, converters, pending, source, options)
      }
    }
    return { events, position: last === null ? null : { dialect: 'postgres', value: formatLsn(last) } }
  }

  /** A message inside a transaction: a relation is noted, a row change becomes events. */
  private async decodeChange(
    name: string,
    message: PgOutputMessage,
    relations: Map<number, Relation>,
    converters: Map<number, RelationConverter>,
    events: ChangeEvent[],
    source: ChangeEvent['source'],
    options: DecodeOptions,
  ): Promise<void> {
    switch (message.tag) {
      case 'relation':
        // sent again after a schema change: describe the table anew for its new columns
        if (relations.has(message.relation.oid)) this.db.invalidateCatalog(message.relation.name)
        relations.set(message.relation.oid, message.relation)
        converters.delete(message.relation.oid)
        break
      case 'insert':
      case 'update':
      case 'delete': {
        const relation = relations.get(message.relationOid)
        if (!relation)
          throw new ReplicatorError(
            'QUERY_FAILED',
            `[replicator:postgres] pgoutput sent a change of relation ${message.relationOid} before describing it.`,
          )
        let converter = converters.get(relation.oid)
        if (!converter) converters.set(relation.oid, (converter = await this.relationConverter(relation)))
        pushEvents(events, message, relation.name, converter, source, options)
        break
      }
      case 'truncate':
        // pgoutput describes each truncated relation first
        for (const oid of message.relationOids) {
          const relation = relations.get(oid)
          if (!relation)
            throw new ReplicatorError(
              'QUERY_FAILED',
              `[replicator:postgres] pgoutput sent a TRUNCATE of relation ${oid} before describing it (capture "${name}").`,
            )
          events.push({ op: 't', collection: relation.name, key: null, before: null, after: null, source })
        }
        break
      default:
        break
    }
  }

  /**
   * A transaction that was spilled to disk: its first part of events, and `nextPart` for the
   * rest, read from the file in order (the caller applies them all in one target transaction).
   * The file is removed after the last part, or when the stream closes.
   */
  async decodeSpilled(
    name: string,
    transaction: StreamedTransaction,
    after: bigint,
    state: CaptureStream,
    options: DecodeOptions & { partSize: number },
  ): Promise<ChangeBatch> {
    const spill = transaction.spill!
    state.spills.add(spill)
    const done = () => {
      spill.remove()
      state.spills.delete(spill)
    }
    // The parts are decoded against the relations as they were before the transaction; later
    // transactions need the ones it described.
    const relations = new Map(state.relations)
    const converters = new Map(state.converters)
    for (const data of transaction.spilledRelations ?? []) {
      const message = parsePgOutput(data)
      if (message.tag === 'relation') {
        state.relations.set(message.relation.oid, message.relation)
        state.converters.delete(message.relation.oid)
      }
    }
    const position = { dialect: 'postgres', value: formatLsn(transaction.commitEnd) }
    if (transaction.commitEnd <= after) {
      done()
      return { events: [], position }
    }
    const source = { dialect: 'postgres', database: this.databaseName, position, ts: transaction.commitTime }
    let txId: string | undefined
    const nextPart = async (): Promise<ChangeEvent[] | null> => {
      for (;;) {
        const messages = spill.read(options.partSize)
        if (!messages.length) {
          done()
          return null
        }
        const events: ChangeEvent[] = []
        for (const data of messages) {
          const message = parsePgOutput(data)
          if (message.tag === 'begin') txId = String(message.xid)
          else await this.decodeChange(name, message, relations, converters, events, source, options)
        }
        for (const event of events) event.txId = txId
        if (events.length) return events
      }
    }
    const first = await nextPart()
    return first ? { events: first, position, nextPart } : { events: [], position }
  }

  /** Text values of a relation's tuples → portable values, prepared once per relation and read. */
  private async relationConverter(relation: Relation): Promise<RelationConverter> {
    const description = await this.db.describeCollection(relation.name)
    const byName = new Map(description.columns.map((column) => [column.name, column]))
    const parsers = relation.columns.map((column) => {
      const parse = typeParsers.getTypeParser(column.typeOid, 'text') as (text: string) => unknown
      const described = byName.get(column.name)
      const decode = described ? columnDecoder(this.db.flavor, described) : null
      return { name: column.name, parse, decode }
    })
    /** Column `index` of a tuple as a portable value; undefined when it was not sent. */
    const valueAt = (tuple: RawTuple, index: number): unknown => {
      const text = index < tuple.spans.length / 2 ? nativeText(tuple, index) : undefined
      if (text === null || text === undefined) return text
      const { parse, decode } = parsers[index]!
      const parsed = parse(text)
      return decode && parsed !== null ? decode(parsed) : parsed
    }
    const toRow = (tuple: RawTuple): Row => {
      const row: Row = {}
      for (let index = 0; index < parsers.length; index++) {
        const value = valueAt(tuple, index)
        if (value !== undefined) row[parsers[index]!.name] = value // not sent: leave the target's value alone
      }
      return row
    }
    const keyIndexes = description.primaryKey.map((name) =>
      relation.columns.findIndex((column) => column.name === name),
    )
    const toKey = (tuple: RawTuple): RowKey => {
      if (keyIndexes.some((index) => index < 0)) return keyOfRow(toRow(tuple), description.primaryKey)
      if (keyIndexes.length === 1) return valueAt(tuple, keyIndexes[0]!) as RowKey
      const key: Row = {}
      for (let position = 0; position < keyIndexes.length; position++)
        key[description.primaryKey[position]!] = valueAt(tuple, keyIndexes[position]!)
      return key
    }
    const nativeColumns = relation.columns.every((column) => byName.has(column.name))
      ? relation.columns.map((column) => ({ name: column.name, nativeType: byName.get(column.name)!.nativeType }))
      : null
    return { toRow, toKey, primaryKey: description.primaryKey, nativeColumns }
  }
}

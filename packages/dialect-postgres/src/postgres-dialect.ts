import { createHash } from 'node:crypto'
import { Transform, type Readable } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import {
  columnDecoder,
  keyIdentity,
  keyOfRow,
  keyToObject,
  nativeText,
  registerDialect,
  ReplicatorError,
  runTransactionOn,
  SqlDialect,
  type CaptureBacklog,
  type CaptureOptions,
  type ChangeBatch,
  type ChangeEvent,
  type CollectionDescription,
  type NativeReplicationStatus,
  type NativeRow,
  type Position,
  type ReadChangesOptions,
  type Row,
  type RowKey,
  type ColumnDescription,
  type ColumnType,
  type DialectConfig,
  type SqlExecutor,
} from '@mostajs/replicator-core'
import { NATIVE_TEXT_FORMAT, postgresFlavor } from './postgres-flavor.js'
import { formatLsn, parseLsn, parsePgOutput, type PgOutputMessage, type RawTuple, type Relation } from './pgoutput.js'
import { ReplicationStream, type StreamedTransaction } from './replication-stream.js'
import type { SpillFile } from '@mostajs/replicator-core'

/** Converts the tuples of one relation. */
interface RelationConverter {
  toRow(tuple: RawTuple): Row
  /** The primary key of a tuple, decoding only the key columns. */
  toKey(tuple: RawTuple): RowKey
  primaryKey: string[]
  /** The relation's columns with their native types (null when the table no longer has one of them). */
  nativeColumns: NativeRow['columns'] | null
}

/**
 * Appends the change events of one pgoutput row change (an update of the key is a delete plus
 * an upsert).
 */
function pushEvents(
  events: ChangeEvent[],
  message: Extract<PgOutputMessage, { tag: 'insert' | 'update' | 'delete' }>,
  collection: string,
  converter: RelationConverter,
  source: ChangeEvent['source'],
  options: DecodeOptions,
): void {
  const { toRow, toKey, primaryKey } = converter
  if (message.tag === 'delete') {
    const before = toRow(message.oldTuple)
    events.push({
      op: 'd',
      collection,
      key: keyOfRow(before, primaryKey),
      before: message.oldIsKeyOnly ? null : before,
      after: null,
      source,
    })
    return
  }
  let before: Row | null = null
  const key = toKey(message.tuple)
  if (message.tag === 'update' && message.oldTuple) {
    before = toRow(message.oldTuple)
    if (keyIdentity(before, primaryKey) !== keyIdentity(keyToObject(key, primaryKey, collection), primaryKey)) {
      events.push({ op: 'd', collection, key: keyOfRow(before, primaryKey), before: null, after: null, source })
    }
    if (message.oldIsKeyOnly) before = null
  }
  const op = message.tag === 'insert' ? 'c' : 'u'
  const event: ChangeEvent = options.lazyAfter
    ? new LazyUpsertEvent(op, collection, key, before, source, message.tuple, converter)
    : { op, collection, key, before, after: toRow(message.tuple), source }
  if (options.nativeText && converter.nativeColumns) {
    event.nativeAfter = {
      format: NATIVE_TEXT_FORMAT,
      columns: converter.nativeColumns,
      data: message.tuple.data,
      spans: message.tuple.spans,
    }
  }
  events.push(event)
}

/** A capture read over the streaming replication protocol, and what its reader keeps. */
interface CaptureStream {
  stream: ReplicationStream
  handedOut: bigint
  confirmed: bigint
  relations: Map<number, Relation>
  converters: Map<number, RelationConverter>
  /** Spill files handed out and not read to the end yet (removed with the stream). */
  spills: Set<SpillFile>
}

interface DecodeOptions {
  /** The session that wrote the values had NATIVE_TEXT_SESSION's settings: hand their text on as `nativeAfter`. */
  nativeText: boolean
  /** See ReadChangesOptions.lazyAfter. */
  lazyAfter: boolean
}

/**
 * An upsert whose portable after-image is decoded from the received tuple on first read
 * (ReadChangesOptions.lazyAfter): a target that takes `nativeAfter` never pays for it. The
 * getter lives on the prototype (an accessor per object costs more than the decoding it
 * saves); `toJSON` keeps `after` in JSON.
 */
class LazyUpsertEvent implements ChangeEvent {
  txId?: string
  nativeAfter?: NativeRow
  #decoded: Row | null | undefined
  readonly #tuple: RawTuple
  readonly #converter: RelationConverter

  constructor(
    public op: 'c' | 'u',
    public collection: string,
    public key: RowKey,
    public before: Row | null,
    public source: ChangeEvent['source'],
    tuple: RawTuple,
    converter: RelationConverter,
  ) {
    this.#tuple = tuple
    this.#converter = converter
  }

  get after(): Row | null {
    if (this.#decoded === undefined) this.#decoded = this.#converter.toRow(this.#tuple)
    return this.#decoded
  }

  set after(row: Row | null | undefined) {
    this.#decoded = row ?? null
  }

  toJSON(): ChangeEvent {
    const { op, collection, key, before, after, source, txId } = this
    return { op, collection, key, before, after, source, ...(txId === undefined ? {} : { txId }) }
  }
}

/** Messages decoded between two yields to the event loop. */
const DECODE_SLICE = 1000

/** How long slot operations wait for a slot held by another (dying) session. */
const SLOT_BUSY_WAIT_MS = 15_000

/** Type OIDs whose default pg parsing would lose precision or shift time zones. */
const OID = { int8: 20, date: 1082, timestamp: 1114, numeric: 1700 } as const

/** Per-pool type parsers (never the process-wide pg.types, which other code may rely on). */
const typeParsers = {
  getTypeParser(oid: number, format?: string) {
    if (format === 'binary') return pg.types.getTypeParser(oid, 'binary')
    switch (oid) {
      case OID.int8:
        return (text: string) => BigInt(text)
      case OID.date:
        return (text: string) => text
      case OID.numeric:
        return (text: string) => text
      case OID.timestamp:
        // timestamp without time zone: read as UTC, never as the Node process' local time
        return (text: string) => new Date(`${text.replace(' ', 'T')}Z`)
      default:
        return pg.types.getTypeParser(oid, 'text')
    }
  },
} as unknown as pg.CustomTypesConfig

const PORTABLE_BY_PG_TYPE: Record<string, ColumnType> = {
  bool: 'boolean',
  int2: 'integer',
  int4: 'integer',
  int8: 'bigint',
  numeric: 'decimal',
  float4: 'double',
  float8: 'double',
  varchar: 'string',
  bpchar: 'string',
  text: 'text',
  json: 'json',
  jsonb: 'json',
  timestamptz: 'timestamp',
  timestamp: 'timestamp',
  date: 'date',
  bytea: 'binary',
  uuid: 'uuid',
}

const DESCRIBE_COLUMNS = `
SELECT a.attname AS name, t.typname AS udt, format_type(a.atttypid, a.atttypmod) AS native, a.atttypmod AS typmod,
       NOT a.attnotnull AS nullable,
       (a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%') AS auto,
       coalesce((SELECT k.position FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
                 WHERE i.indrelid = c.oid AND i.indisprimary AND k.attnum = a.attnum), 0) AS key_position
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relname = $1 AND n.nspname = current_schema() AND c.relkind IN ('r', 'p')
ORDER BY a.attnum`

interface DescribedRow {
  name: string
  udt: string
  native: string
  typmod: number
  nullable: boolean
  auto: boolean
  key_position: number
}

function executorOf(client: pg.Pool | pg.PoolClient, inTransaction: boolean): SqlExecutor {
  return {
    inTransaction,
    async execute(sql, params) {
      // (text, values) rather than a config object: pg copies config objects on every call.
      const result = await client.query(sql, params)
      return { rows: result.rows, affected: result.rowCount ?? 0 }
    },
    // on one connection only (a pool would hand the COPY to any of its clients)
    ...(inTransaction
      ? {
          async copyIn(sql: string, data: Buffer) {
            const sink = (client as pg.PoolClient).query(copyFrom(sql))
            sink.end(data)
            await finished(sink)
            return Number(sink.rowCount ?? 0)
          },
        }
      : {}),
  }
}

/**
 * PostgreSQL dialect on node-postgres. Registered as `postgres` and `postgresql`.
 *
 * @example
 * import '@mostajs/replicator-dialect-postgres'
 * const db = createDialect({ dialect: 'postgres', uri: 'postgres://app@127.0.0.1:5432/app' })
 */
export class PostgresDialect extends SqlDialect {
  readonly name = 'postgres'
  private pool: pg.Pool | undefined

  constructor(config: DialectConfig) {
    super(config, postgresFlavor)
  }

  protected async openDriver(): Promise<SqlExecutor> {
    const url = new URL(this.config.uri)
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
      throw new Error(`expected a postgres:// or postgresql:// URI, got "${url.protocol}"`)
    }
    const pool = new pg.Pool({
      connectionString: this.config.uri,
      max: this.config.pool?.max ?? 10,
      min: this.config.pool?.min ?? 0,
      idleTimeoutMillis: this.config.pool?.idleTimeoutMs ?? 30_000,
      connectionTimeoutMillis: this.config.connectTimeoutMs ?? 5000,
      application_name: 'mostajs-replicator',
      types: typeParsers,
    })
    // An idle connection dropped by the server: the pool replaces it; the next query reports any real outage.
    pool.on('error', () => undefined)
    this.pool = pool
    return executorOf(pool, false)
  }

  protected async closeDriver(): Promise<void> {
    for (const name of [...this.streams.keys()]) await this.closeStream(name)
    const pool = this.pool
    this.pool = undefined
    await pool?.end()
  }

  protected async runTransaction<T>(fn: (executor: SqlExecutor) => Promise<T>): Promise<T> {
    if (!this.pool) throw new Error('not connected')
    const client = await this.pool.connect()
    return runTransactionOn(
      { executor: executorOf(client, true), release: (broken) => client.release(broken) },
      'BEGIN',
      fn,
    )
  }

  // ---- bulk copy (COPY text format) ----

  readonly bulkFormat = 'postgres-copy-text'

  /** A session for COPY: ISO dates and exact floats, so the text means the same on the other side. */
  private async copySession(): Promise<pg.PoolClient> {
    this.operations() // NOT_CONNECTED before connect()
    const client = await this.pool!.connect()
    try {
      await client.query(
        "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'",
      )
    } catch (error) {
      client.release(true)
      throw this.toReplicatorError(error)
    }
    return client
  }

  async bulkExport(collection: string, columns: string[]): Promise<Readable> {
    const q = (identifier: string) => this.flavor.quoteIdentifier(identifier)
    const client = await this.copySession()
    let released = false
    const release = (broken: boolean) => {
      if (!released) {
        released = true
        client.release(broken)
      }
    }
    const stream = client.query(copyTo(`COPY ${q(collection)} (${columns.map(q).join(', ')}) TO STDOUT`))
    stream.once('end', () => release(false))
    stream.once('error', () => release(true))
    stream.once('close', () => release(!stream.readableEnded))
    return stream
  }

  async bulkImport(
    collection: string,
    columns: string[],
    data: Readable,
    onRows?: (rowsSoFar: number) => void,
  ): Promise<number> {
    const q = (identifier: string) => this.flavor.quoteIdentifier(identifier)
    const client = await this.copySession()
    let broken = false
    try {
      const sink = client.query(copyFrom(`COPY ${q(collection)} (${columns.map(q).join(', ')}) FROM STDIN`))
      let rows = 0
      let reported = 0
      // In the text format every row ends with a newline (newlines inside values are escaped).
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          for (let index = chunk.indexOf(10); index !== -1; index = chunk.indexOf(10, index + 1)) rows++
          if (onRows && rows - reported >= 10_000) {
            reported = rows
            onRows(rows)
          }
          callback(null, chunk)
        },
      })
      await pipeline(data, counter, sink)
      onRows?.(rows)
      return Number(sink.rowCount ?? rows)
    } catch (error) {
      broken = true
      throw this.toReplicatorError(error, collection)
    } finally {
      client.release(broken)
    }
  }

  // ---- native replication ----

  async replicationStatus(): Promise<NativeReplicationStatus> {
    const [{ standby }] = (await this.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby')) as [
      { standby: boolean },
    ]
    if (!standby) {
      const [row] = await this.query<{ lsn: string; standbys: string; read_only: string }>(
        `SELECT pg_current_wal_lsn()::text AS lsn, (SELECT count(*) FROM pg_stat_replication)::text AS standbys, current_setting('default_transaction_read_only') AS read_only`,
      )
      return { role: 'primary', lsn: row?.lsn, standbys: Number(row?.standbys ?? 0), readOnly: row?.read_only === 'on' }
    }
    const [row] = await this.query<{
      replay_lsn: string | null
      receive_lsn: string | null
      replay_at: Date | null
      paused: boolean
      lag_ms: string | null
    }>(
      `SELECT pg_last_wal_replay_lsn()::text AS replay_lsn, pg_last_wal_receive_lsn()::text AS receive_lsn,
              pg_last_xact_replay_timestamp() AS replay_at, pg_is_wal_replay_paused() AS paused,
              (EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::text AS lag_ms`,
    )
    return {
      role: 'replica',
      lagMs: row?.lag_ms === null || row?.lag_ms === undefined ? null : Math.max(0, Math.round(Number(row.lag_ms))),
      applying: !row?.paused,
      replayLsn: row?.replay_lsn,
      receiveLsn: row?.receive_lsn,
      lastReplayAt: row?.replay_at,
    }
  }

  /** pg_promote(): the standby leaves recovery and accepts writes (waits up to 60 s). */
  async promote(): Promise<void> {
    const [row] = await this.query<{ promoted: boolean }>('SELECT pg_promote(true, 60) AS promoted')
    if (!row?.promoted)
      throw new ReplicatorError(
        'QUERY_FAILED',
        `[replicator:postgres] pg_promote() did not complete on ${this.maskedUri} within 60 s.`,
      )
    await this.setReadOnly(false)
  }

  /** Sets default_transaction_read_only for every new transaction of every session (ALTER SYSTEM + reload). */
  async setReadOnly(readOnly: boolean): Promise<void> {
    await this.query(
      readOnly
        ? 'ALTER SYSTEM SET default_transaction_read_only = on'
        : 'ALTER SYSTEM RESET default_transaction_read_only',
    )
    await this.query('SELECT pg_reload_conf()')
  }

  /** Points this standby's primary_conninfo at another primary (applied by a reload). */
  async replicateFrom(primaryUri: string): Promise<void> {
    const url = new URL(primaryUri)
    const quote = (value: string) => `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`
    const conninfo = [
      `host=${quote(url.hostname)}`,
      `port=${url.port || '5432'}`,
      `user=${quote(decodeURIComponent(url.username || 'postgres'))}`,
      ...(url.password ? [`password=${quote(decodeURIComponent(url.password))}`] : []),
    ].join(' ')
    await this.query(`ALTER SYSTEM SET primary_conninfo = '${conninfo.replaceAll("'", "''")}'`)
    await this.query('SELECT pg_reload_conf()')
  }

  // ---- change capture (logical decoding, pgoutput) ----

  /** Slot and publication of a capture: `replicator_<name>_<hash>` (slot names allow [a-z0-9_], 63 bytes). */
  private captureObjects(name: string): { slot: string; publication: string } {
    const safe = name
      .toLowerCase()
      .replace(/[^a-z0-9_]/g, '_')
      .slice(0, 40)
    const hash = createHash('sha1').update(name).digest('hex').slice(0, 8)
    const object = `replicator_${safe}_${hash}`
    return { slot: object, publication: object }
  }

  async setupCapture(options: CaptureOptions): Promise<void> {
    const { slot, publication } = this.captureObjects(options.name)
    const q = (identifier: string) => this.flavor.quoteIdentifier(identifier)
    for (const collection of options.collections) {
      const description = await this.describeCollection(collection)
      if (!description.primaryKey.length) {
        throw new ReplicatorError(
          'NOT_SUPPORTED',
          `[replicator:postgres] Collection "${collection}" has no primary key; change capture needs one to apply updates and deletes.`,
          { details: { collection } },
        )
      }
    }
    const tables = options.collections.map(q).join(', ')
    const existing = await this.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication])
    if (!existing.length)
      await this.query(`CREATE PUBLICATION ${q(publication)}${tables ? ` FOR TABLE ${tables}` : ''}`)
    else if (tables) {
      // Only touch a publication whose tables changed: SET TABLE drops and re-adds every table,
      // and changes decoded around that moment can be filtered out.
      const current = (
        await this.query<{ name: string }>(
          `SELECT tablename AS name FROM pg_publication_tables WHERE pubname = $1 AND schemaname = current_schema()`,
          [publication],
        )
      )
        .map((row) => row.name)
        .sort()
      const wanted = [...options.collections].sort()
      if (JSON.stringify(current) !== JSON.stringify(wanted)) {
        const added = wanted.filter((name) => !current.includes(name))
        const removed = current.filter((name) => !wanted.includes(name))
        if (added.length) await this.query(`ALTER PUBLICATION ${q(publication)} ADD TABLE ${added.map(q).join(', ')}`)
        if (removed.length)
          await this.query(`ALTER PUBLICATION ${q(publication)} DROP TABLE ${removed.map(q).join(', ')}`)
      }
    }
    const slots = await this.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])
    if (!slots.length) await this.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot])
  }

  /**
   * Runs a statement on a replication slot, waiting while another backend still holds it
   * (the session of a process that just died keeps it until PostgreSQL notices, usually in
   * well under a second).
   */
  private async onSlot<T>(slot: string, run: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + SLOT_BUSY_WAIT_MS
    for (;;) {
      try {
        return await run()
      } catch (error) {
        // 55006 object_in_use: from a query (wrapped) or from START_REPLICATION (raw driver error)
        const code = ReplicatorError.isInstance(error) ? error.details.driverCode : (error as { code?: string }).code
        const busy = code === '55006'
        if (!busy || Date.now() > deadline) {
          if (busy)
            throw new ReplicatorError(
              'QUERY_FAILED',
              `[replicator:postgres] Replication slot "${slot}" stayed in use by another session for ${SLOT_BUSY_WAIT_MS / 1000} s: is another process running the same rule?`,
              { cause: error },
            )
          throw error
        }
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }

  async dropCapture(name: string): Promise<void> {
    await this.closeStream(name)
    const { slot, publication } = this.captureObjects(name)
    await this.onSlot(slot, () =>
      this.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]),
    )
    await this.query(`DROP PUBLICATION IF EXISTS ${this.flavor.quoteIdentifier(publication)}`)
  }

  async captureBacklog(name: string): Promise<CaptureBacklog | null> {
    const { slot } = this.captureObjects(name)
    const rows = await this.query<{ retained: string | null }>(
      'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text AS retained FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    )
    return rows.length ? { retainedBytes: Number(rows[0]!.retained ?? 0) } : null
  }

  async readChanges(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    if (!this.sqlCaptureOnly.has(name)) {
      try {
        return await this.readFromStream(name, options)
      } catch (error) {
        // No replication connection allowed (pg_hba, REPLICATION privilege): the SQL functions
        // read the same slot, only slower.
        const code = (error as { code?: string }).code
        if (code !== '28000' && code !== '42501' && code !== '28P01') throw this.toReplicatorError(error)
        this.sqlCaptureOnly.add(name)
      }
    }
    return this.readWithSqlFunctions(name, options)
  }

  /** Captures read over the streaming replication protocol, by capture name. */
  private readonly streams = new Map<string, CaptureStream>()
  /** The database of the URI, as change events name their source. */
  private get databaseName(): string {
    return decodeURIComponent(new URL(this.config.uri).pathname.slice(1))
  }

  /** Closes a capture's replication stream and removes the spill files it left. */
  private async closeStream(name: string): Promise<void> {
    const state = this.streams.get(name)
    if (!state) return
    this.streams.delete(name)
    for (const spill of state.spills) spill.remove()
    await state.stream.close()
  }

  /** Captures whose replication connection the server refused: read with the SQL functions. */
  private readonly sqlCaptureOnly = new Set<string>()

  /**
   * Reads from the capture's replication stream (opened on first use). The stream keeps
   * receiving while the caller applies; when the caller asks again without having confirmed
   * what it was handed (its apply failed), the stream is reopened from the slot's confirmed
   * position so nothing is skipped.
   */
  private async readFromStream(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    const { slot, publication } = this.captureObjects(name)
    const after = options.after ? parseLsn(String(options.after.value)) : 0n
    let state = this.streams.get(name)
    // The caller asks for changes it was handed already and never confirmed (its apply failed,
    // or a new consumer starts over): read again from the slot's confirmed position. A caller
    // reading ahead (`after` = the end of what it was handed) just goes on.
    if (state && (state.stream.error || (after < state.handedOut && state.handedOut > state.confirmed))) {
      await this.closeStream(name)
      state = undefined
    }
    if (!state) {
      const [row] = await this.query<{ confirmed: string | null }>(
        'SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      )
      if (!row)
        throw new ReplicatorError(
          'QUERY_FAILED',
          `[replicator:postgres] Capture "${name}" has no replication slot on ${this.maskedUri}; add the rule again (setupCapture).`,
          { details: { capture: name } },
        )
      const slotConfirmed = row.confirmed ? parseLsn(row.confirmed) : 0n
      const from = after > slotConfirmed ? after : slotConfirmed
      // waits while a dying session of an earlier run still holds the slot
      const stream = await this.onSlot(slot, () =>
        ReplicationStream.open(
          this.config.uri,
          slot,
          publication,
          from,
          this.config.connectTimeoutMs ?? 5000,
          this.config.capture,
        ),
      )
      state = {
        stream,
        handedOut: from,
        confirmed: from,
        relations: new Map(),
        converters: new Map(),
        spills: new Set(),
      }
      this.streams.set(name, state)
    }
    const [{ lsn }] = (await this.query<{ lsn: string }>('SELECT pg_current_wal_flush_lsn()::text AS lsn')) as [
      { lsn: string },
    ]
    const transactions = await state.stream.take(Math.max(1, options.maxEvents), parseLsn(lsn), 10_000)
    if (!transactions.length) return { events: [], position: null }
    state.handedOut = transactions[transactions.length - 1]!.commitEnd
    const decodeOptions = { nativeText: true, lazyAfter: options.lazyAfter === true }
    // parts no larger than what a transaction may hold in memory
    if (transactions[0]!.spill)
      return this.decodeSpilled(name, transactions[0]!, after, state, {
        ...decodeOptions,
        partSize: state.stream.spillAfter,
      })
    return this.decodeMessages(
      name,
      transactions.flatMap((transaction) => transaction.messages),
      after,
      state.relations,
      state.converters,
      decodeOptions,
    )
  }

  /** The same slot read with `pg_logical_slot_peek_binary_changes` (re-decoded from its restart point on each call). */
  private async readWithSqlFunctions(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    const { slot, publication } = this.captureObjects(name)
    const after = options.after ? parseLsn(String(options.after.value)) : 0n
    const rows = await this.onSlot(slot, () =>
      this.query<{ data: Buffer }>(
        `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, 'proto_version', '1', 'publication_names', $3)`,
        [slot, Math.max(1, options.maxEvents), publication],
      ),
    )
    return this.decodeMessages(
      name,
      rows.map((row) => row.data),
      after,
      new Map(),
      new Map(),
      { nativeText: false, lazyAfter: options.lazyAfter === true },
    )
  }

  /**
   * pgoutput messages → change events of the transactions committed after `after`, in commit
   * order.
   */
  private async decodeMessages(
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
        throw new ReplicatorError(
          'NOT_SUPPORTED',
          `[replicator:postgres] A TRUNCATE was captured by "${name}" on ${this.maskedUri}; truncates cannot be replayed row by row yet. Re-run the rule's snapshot.`,
        )
      default:
        break
    }
  }

  /**
   * A transaction that was spilled to disk: its first part of events, and `nextPart` for the
   * rest, read from the file in order (the caller applies them all in one target transaction).
   * The file is removed after the last part, or when the stream closes.
   */
  private async decodeSpilled(
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
    const description = await this.describeCollection(relation.name)
    const byName = new Map(description.columns.map((column) => [column.name, column]))
    const parsers = relation.columns.map((column) => {
      const parse = typeParsers.getTypeParser(column.typeOid, 'text') as (text: string) => unknown
      const described = byName.get(column.name)
      const decode = described ? columnDecoder(this.flavor, described) : null
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

  async confirmChanges(name: string, position: Position): Promise<void> {
    const state = this.streams.get(name)
    if (state && !state.stream.error) {
      // The stream holds the slot: the position goes back as its flush position.
      const lsn = parseLsn(String(position.value))
      if (lsn > state.confirmed) state.confirmed = lsn
      state.stream.confirm(state.confirmed)
      return
    }
    if (state) await this.closeStream(name)
    const { slot } = this.captureObjects(name)
    await this.onSlot(slot, () =>
      this.query('SELECT pg_replication_slot_advance($1, $2::pg_lsn)', [slot, String(position.value)]),
    )
    await this.logRunningTransactions()
  }

  private canLogSnapshot: boolean | undefined

  /**
   * Asks the server to log its running transactions (PostgreSQL 16+, superuser). A slot's
   * restart point only moves past such a record, and every peek decodes from the restart
   * point: without it, a long backlog is decoded again and again (the server logs one by
   * itself only every 15 s).
   */
  private async logRunningTransactions(): Promise<void> {
    if (this.canLogSnapshot === false) return
    try {
      await this.query('SELECT pg_log_standby_snapshot()')
      this.canLogSnapshot = true
    } catch {
      this.canLogSnapshot = false // older server, or not allowed: the server's own 15 s cadence applies
    }
  }

  async currentPosition(): Promise<Position> {
    const [row] = await this.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')
    return { dialect: 'postgres', value: row!.lsn }
  }

  protected async introspect(collection: string, executor: SqlExecutor): Promise<CollectionDescription | null> {
    const { rows } = await executor.execute(DESCRIBE_COLUMNS, [collection])
    if (rows.length === 0) return null
    const described = rows as unknown as DescribedRow[]
    const columns = described.map(toColumn)
    const primaryKey = described
      .filter((row) => Number(row.key_position) > 0)
      .sort((a, b) => Number(a.key_position) - Number(b.key_position))
      .map((row) => row.name)
    return { name: collection, columns, primaryKey }
  }

  protected async listTables(executor: SqlExecutor): Promise<string[]> {
    const { rows } = await executor.execute(
      `SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`,
      [],
    )
    return rows.map((row) => String(row.name))
  }
}

function toColumn(row: DescribedRow): ColumnDescription {
  const type = PORTABLE_BY_PG_TYPE[row.udt] ?? 'unknown'
  const column: ColumnDescription = { name: row.name, type, nativeType: row.native, nullable: row.nullable }
  if (row.auto) column.autoIncrement = true
  const typmod = Number(row.typmod)
  if (typmod > 0) {
    if (type === 'string') column.length = typmod - 4
    if (type === 'decimal') {
      column.precision = ((typmod - 4) >> 16) & 0xffff
      column.scale = (typmod - 4) & 0xffff
    }
  }
  return column
}

registerDialect('postgres', (config) => new PostgresDialect(config), ['postgresql'])

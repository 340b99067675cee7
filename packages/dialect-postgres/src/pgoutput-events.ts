import {
  keyIdentity,
  keyOfRow,
  keyToObject,
  type ChangeEvent,
  type NativeRow,
  type Row,
  type RowKey,
} from '@mostajs/replicator-core'
import { NATIVE_TEXT_FORMAT } from './postgres-flavor.js'
import type { PgOutputMessage, RawTuple } from './pgoutput.js'

/** Converts the tuples of one relation. */
export interface RelationConverter {
  toRow(tuple: RawTuple): Row
  /** The primary key of a tuple, decoding only the key columns. */
  toKey(tuple: RawTuple): RowKey
  primaryKey: string[]
  /** The relation's columns with their native types (null when the table no longer has one of them). */
  nativeColumns: NativeRow['columns'] | null
}

/** How row changes are decoded. */
export interface DecodeOptions {
  /** The session that wrote the values had NATIVE_TEXT_SESSION's settings: hand their text on as `nativeAfter`. */
  nativeText: boolean
  /** See ReadChangesOptions.lazyAfter. */
  lazyAfter: boolean
}

/**
 * Appends the change events of one pgoutput row change (an update of the key is a delete plus
 * an upsert).
 */
export function pushEvents(
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
  let movedFrom: RowKey | undefined
  if (message.tag === 'update' && message.oldTuple) {
    before = toRow(message.oldTuple)
    if (keyIdentity(before, primaryKey) !== keyIdentity(keyToObject(key, primaryKey, collection), primaryKey)) {
      movedFrom = keyOfRow(before, primaryKey)
      events.push({ op: 'd', collection, key: movedFrom, before: null, after: null, source })
    }
    if (message.oldIsKeyOnly) before = null
  }
  const op = message.tag === 'insert' ? 'c' : 'u'
  const event: ChangeEvent = options.lazyAfter
    ? new LazyUpsertEvent(op, collection, key, before, source, message.tuple, converter)
    : { op, collection, key, before, after: toRow(message.tuple), source }
  if (movedFrom !== undefined) event.movedFrom = movedFrom
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

/**
 * An upsert whose portable after-image is decoded from the received tuple on first read
 * (ReadChangesOptions.lazyAfter): a target that takes `nativeAfter` never pays for it. The
 * getter lives on the prototype (an accessor per object costs more than the decoding it
 * saves); `toJSON` keeps `after` in JSON.
 */
class LazyUpsertEvent implements ChangeEvent {
  txId?: string
  movedFrom?: RowKey
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

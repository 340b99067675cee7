import { createHash } from 'node:crypto'
import {
  collectionSchemaOf,
  describeKey,
  keyIdentity,
  keyOfRow,
  keyToObject,
  mergeNativeRows,
  nativeColumnsFit,
  nativeRowComplete,
  ReplicatorError,
  scanAll,
  type ChangeBatch,
  type ChangeEvent,
  type CollectionDescription,
  type Dialect,
  type DialectOperations,
  type NativeRow,
  type Position,
  type Row,
  type RowKey,
} from '@mostajs/replicator-core'

/** A replication rule: stream every change of `collections` from a source master to a target master. */
export interface ReplicationRuleConfig {
  name: string
  /** Source project (its master is read). */
  source: string
  /** Target project (its master is written). */
  target: string
  /**
   * `cdc`: snapshot, then log-based streaming. `snapshot`: each sync makes the target a full
   * mirror (creates, updates, and deletes target rows absent from the source); no capture.
   */
  mode: 'cdc' | 'snapshot' | 'bidirectional'
  /** Collections to carry; `['*']` follows the source catalogue. */
  collections: string[]
  /**
   * How a source change meets an existing target row: `source-wins` (default) applies it;
   * `target-wins` never overwrites or deletes an existing target row (new rows still arrive);
   * `timestamp` applies an upsert only when its `timestampColumn` is not older than the
   * target's (last writer wins; deletes apply). Skipped changes are counted in `skipped`.
   */
  conflictResolution?: 'source-wins' | 'target-wins' | 'timestamp'
  /** Column compared by `timestamp` resolution (default `updatedAt`). */
  timestampColumn?: string
  enabled?: boolean
  /** Most events applied per target transaction (default 1000). */
  batchSize?: number
  /** Internal collections carried besides `collections` (the heartbeat table, for managed replicas). */
  alsoCarry?: string[]
  /**
   * Internal (bidirectional rules): drop changes whose row the target already holds as is,
   * so a change applied by one direction and captured again ends there instead of bouncing.
   */
  suppressNoOps?: boolean
  /** Internal (the reverse direction of a bidirectional rule): start streaming without a snapshot. */
  skipSnapshot?: boolean
  /**
   * Internal (bidirectional rules, both directions): the rule whose deletes are remembered as
   * tombstones on both sides, so a delete and an update of one row made on the two sides at
   * once resolve by time like two updates do (see `resolveConflicts`).
   */
  tombstones?: string
  /**
   * Identity of the source server (the manager passes `project/replica` of the master). When
   * it differs from the one stored with the offset, the source master changed (a promotion):
   * log positions of the old server mean nothing on the new one, so the runner re-seeds the
   * target by a mirror pass (copy, and delete rows the source no longer has) and streams from
   * the new server's capture. A bidirectional rule merges instead (newer rows win, nothing is
   * deleted: a row the target holds alone may be a write of its own not carried back yet).
   */
  origin?: string
}

/** Per-collection counters of a rule. */
export interface CollectionStats {
  collection: string
  snapshotRows: number
  created: number
  updated: number
  deleted: number
  deadLettered: number
}

/** What a rule did so far (the original `getSyncStats` shape, plus ours). */
export interface SyncStats {
  ruleName: string
  lastSync: Date | null
  /** Rows written and rows deleted on the target (snapshot copies, streamed changes, mirror deletes). */
  recordsSynced: number
  created: number
  updated: number
  deleted: number
  skipped: number
  errors: number
  deadLettered: number
  /** Times the target was re-seeded because the source master changed (promotion). */
  reseeds: number
  /** Duration of the last sync() in ms. */
  duration: number
  /** Age of the newest applied change when it was applied (ms); 0 when nothing was pending. */
  lagMs: number
  /** Source position applied last (null before the first change). */
  position: Position | null
  details: CollectionStats[]
  /** The target → source direction of a bidirectional rule. */
  reverse?: SyncStats
}

/** Callbacks a runner calls as it works (monitoring, progress bars). They must not throw. */
export interface RuleObserver {
  /** After each committed target transaction of captured changes. */
  batchApplied?(info: { rule: string; events: number; durationMs: number; lagMs: number }): void
  /** During a snapshot, after each page written; `total` is the source's row count when the copy began. */
  snapshotProgress?(info: { rule: string; collection: string; done: number; total: number }): void
}

/** Where a rule's progress is kept, in the target, in the same transaction as the rows. */
export const OFFSETS_COLLECTION = '_replicator_offsets'
/** Rows a target refused, with the event and the error. */
export const DEAD_LETTERS_COLLECTION = '_replicator_dead_letters'
/** Deletes applied by bidirectional rules, with the time they were made (on both sides). */
export const TOMBSTONES_COLLECTION = '_replicator_tombstones'
const TOMBSTONES_SCHEMA = {
  name: TOMBSTONES_COLLECTION,
  primaryKey: ['id'],
  columns: [
    { name: 'id', type: 'string' as const, length: 64 },
    { name: 'rule', type: 'string' as const },
    { name: 'collection', type: 'string' as const },
    { name: 'row_key', type: 'text' as const },
    { name: 'deleted_at', type: 'timestamp' as const },
  ],
}
const INTERNAL_PREFIX = '_replicator_'
/** Events read from the source log at once (applied in slices of batchSize). */
const READ_AHEAD_EVENTS = 20_000

/** Stable text of a value for comparisons (bigint, Date, Buffer included). */
function stableText(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === 'bigint') return `${item}n`
    if (item && typeof item === 'object' && (item as { type?: string }).type === 'Buffer')
      return `0x${Buffer.from((item as { data: number[] }).data).toString('hex')}`
    if (item && typeof item === 'object' && !Array.isArray(item))
      return Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    return item
  })
}

/** True when every column of `incoming` has the same value in `current`. */
function sameValues(incoming: Row, current: Row): boolean {
  for (const [name, value] of Object.entries(incoming))
    if (stableText(value) !== stableText(current[name])) return false
  return true
}

/**
 * Last writer wins on `column`; on a tie, both sides of a bidirectional rule pick the same row
 * (the greater stable text), so concurrent writes converge instead of flip-flopping.
 */
function newerOrTieWinner(incoming: Row, current: Row, column: string): boolean {
  const incomingTime = timeOf(incoming, column)
  const currentTime = timeOf(current, column)
  if (incomingTime !== currentTime) return incomingTime > currentTime
  const merged = { ...current, ...incoming }
  return stableText(merged) > stableText(current)
}

function samePosition(a: Position, b: Position): boolean {
  if (a === b || a.value === b.value) return true
  return (
    typeof a.value === 'object' && typeof b.value === 'object' && JSON.stringify(a.value) === JSON.stringify(b.value)
  )
}

/** Splits events into runs of whole transactions (same source position) of about `size` events. */
function transactionSlices(events: ChangeEvent[], size: number): Array<{ events: ChangeEvent[]; position: Position }> {
  const slices: Array<{ events: ChangeEvent[]; position: Position }> = []
  let current: ChangeEvent[] = []
  for (let index = 0; index < events.length; index++) {
    const event = events[index]!
    current.push(event)
    const next = events[index + 1]
    const endOfTransaction = !next || !samePosition(next.source.position, event.source.position)
    if (endOfTransaction && (current.length >= size || !next)) {
      slices.push({ events: current, position: event.source.position })
      current = []
    }
  }
  return slices
}

/**
 * The net upsert of a key changed twice in one batch: the later image, completed by the
 * earlier one when it is partial (unchanged TOAST columns were not sent).
 */
function laterImage(earlier: ChangeEvent, later: ChangeEvent): ChangeEvent {
  const native = later.nativeAfter
  if (native && nativeRowComplete(native)) return later // complete: nothing to decode or merge
  if (!later.after) return later
  const merged: ChangeEvent = { ...later, after: { ...earlier.after, ...later.after } }
  const previous = earlier.nativeAfter
  if (native && previous && previous.columns === native.columns) merged.nativeAfter = mergeNativeRows(previous, native)
  else delete merged.nativeAfter
  return merged
}

interface StoredOffset {
  position: Position | null
  snapshotDone: boolean
  origin?: string | null
}

/** The net changes of one collection in a batch. */
interface NetChanges {
  upserts: Map<string, ChangeEvent>
  deletes: Map<string, ChangeEvent>
  /** Keys whose first change in the batch is an insert. */
  inserted: Set<string>
  /** Bidirectional rules: older writes that crossed a delete of the batch (see applyPart). */
  crossed: Array<{ key: ChangeEvent['key']; at: number }>
  primaryKey: string[]
}

/** Time of a row's timestamp column in ms; rows without one are the oldest. */
function timeOf(row: Row | null | undefined, column: string): number {
  return row?.[column] instanceof Date ? (row[column] as Date).getTime() : -Infinity
}

/**
 * The rows of `keys` that a database holds, by key identity: `$in` lookups of 500 keys, or one
 * lookup per key when the key is composite.
 */
async function rowsByKey(
  database: DialectOperations,
  collection: string,
  keys: RowKey[],
  primaryKey: string[],
  select?: string[],
): Promise<Map<string, Row>> {
  const rows = new Map<string, Row>()
  const options = select ? { select } : {}
  if (primaryKey.length === 1) {
    for (let start = 0; start < keys.length; start += 500) {
      for (const row of await database.find(
        collection,
        { [primaryKey[0]!]: { $in: keys.slice(start, start + 500) } },
        options,
      ))
        rows.set(keyIdentity(row, primaryKey), row)
    }
  } else {
    for (const key of keys) {
      const row = await database.findOne(collection, keyToObject(key, primaryKey, collection), options)
      if (row) rows.set(keyIdentity(row, primaryKey), row)
    }
  }
  return rows
}

/** Id of the tombstone of one row of a rule (a hash: keys can be long). */
function tombstoneId(rule: string, collection: string, identity: string): string {
  return createHash('sha256').update(`${rule}\u0000${collection}\u0000${identity}`).digest('hex')
}

/** JSON of an event that keeps bigint, Buffer and Date readable. */
function eventJson(event: ChangeEvent): string {
  return JSON.stringify(event, (key, value: unknown) => {
    if (key === 'nativeAfter') return undefined // the same row as `after`
    if (typeof value === 'bigint') return value.toString()
    if (
      value &&
      typeof value === 'object' &&
      (value as { type?: string }).type === 'Buffer' &&
      Array.isArray((value as { data?: unknown }).data)
    ) {
      return { $binary: Buffer.from((value as { data: number[] }).data).toString('base64') }
    }
    return value
  })
}

/**
 * Runs one replication rule between two connected dialects: prepares the target tables and
 * the source capture, snapshots by keyset pages, then applies captured changes in batches.
 * Each batch is one target transaction that also stores the rule's offset, and the source
 * only forgets changes after that commit: a crash can neither lose nor double-apply a batch.
 */
export class RuleRunner {
  private collections: string[] = []
  private prepared = false
  private resumed = false
  private readonly stats: SyncStats
  private readonly perCollection = new Map<string, CollectionStats>()

  constructor(
    readonly config: ReplicationRuleConfig,
    private readonly source: Dialect,
    private readonly target: Dialect,
    private readonly observer: RuleObserver = {},
  ) {
    validateRule(config)
    this.stats = {
      ruleName: config.name,
      lastSync: null,
      recordsSynced: 0,
      created: 0,
      updated: 0,
      deleted: 0,
      skipped: 0,
      errors: 0,
      deadLettered: 0,
      reseeds: 0,
      duration: 0,
      lagMs: 0,
      position: null,
      details: [],
    }
    const needed =
      config.mode !== 'snapshot' ? (['setupCapture', 'readChanges', 'confirmChanges', 'dropCapture'] as const) : []
    for (const capability of needed) {
      if (typeof source[capability] !== 'function') {
        throw new ReplicatorError(
          'NOT_SUPPORTED',
          `Rule "${config.name}": the source (${source.name}) has no change capture (${capability}) yet.`,
          { details: { rule: config.name, dialect: source.name } },
        )
      }
    }
  }

  /**
   * Checks every collection can be carried (a compatibility report listing each column of no
   * portable type), creates missing target tables from the source's columns, and sets up the
   * source capture. Idempotent.
   */
  async prepare(): Promise<void> {
    const wanted = await this.wantedCollections()
    const descriptions: CollectionDescription[] = []
    const problems: string[] = []
    for (const collection of wanted) {
      const description = await this.source.describeCollection(collection)
      for (const column of description.columns)
        if (column.type === 'unknown') problems.push(`${collection}.${column.name} (${column.nativeType})`)
      if (this.config.conflictResolution === 'timestamp' && !collection.startsWith(INTERNAL_PREFIX)) {
        const column = this.timestampColumn
        if (!description.columns.some((candidate) => candidate.name === column && candidate.type === 'timestamp')) {
          throw new ReplicatorError(
            'CONFIG_INVALID',
            `Rule "${this.config.name}": conflictResolution 'timestamp' compares "${column}", and collection "${collection}" has no timestamp column of that name. Set timestampColumn.`,
            { details: { rule: this.config.name, collection } },
          )
        }
      }
      if (!description.primaryKey.length) problems.push(`${collection} has no primary key`)
      descriptions.push(description)
    }
    if (problems.length) {
      throw new ReplicatorError(
        'TYPE_UNSUPPORTED',
        `Rule "${this.config.name}" cannot carry: ${problems.join('; ')}. Give these columns a portable type or leave the collection out.`,
        {
          details: { rule: this.config.name, problems },
        },
      )
    }
    for (const description of descriptions) await this.target.ensureCollection(collectionSchemaOf(description))
    await this.target.ensureCollection({
      name: OFFSETS_COLLECTION,
      primaryKey: ['rule'],
      columns: [
        { name: 'rule', type: 'string' },
        { name: 'position', type: 'text' },
        { name: 'snapshot_done', type: 'boolean' },
        { name: 'origin', type: 'string' },
        { name: 'updated_at', type: 'timestamp' },
      ],
    })
    await this.target.ensureCollection({
      name: DEAD_LETTERS_COLLECTION,
      primaryKey: ['id'],
      columns: [
        { name: 'id', type: 'string', length: 255 },
        { name: 'rule', type: 'string' },
        { name: 'collection', type: 'string' },
        { name: 'row_key', type: 'text' },
        { name: 'event', type: 'text' },
        { name: 'error', type: 'text' },
        { name: 'at', type: 'timestamp' },
      ],
    })
    if (this.config.tombstones) {
      await this.target.ensureCollection(TOMBSTONES_SCHEMA)
      await this.source.ensureCollection(TOMBSTONES_SCHEMA)
    }
    if (this.config.mode !== 'snapshot')
      await this.source.setupCapture!({ name: this.config.name, collections: wanted })
    this.collections = wanted
    this.prepared = true
    for (const collection of wanted)
      if (!this.perCollection.has(collection))
        this.perCollection.set(collection, {
          collection,
          snapshotRows: 0,
          created: 0,
          updated: 0,
          deleted: 0,
          deadLettered: 0,
        })
  }

  /** The collections to carry now: `['*']` follows the source catalogue. */
  private async wantedCollections(): Promise<string[]> {
    const catalogue =
      this.config.collections.includes('*') || this.config.alsoCarry?.length ? await this.source.listCollections() : []
    const named = this.config.collections.includes('*')
      ? catalogue.filter((name) => !name.startsWith(INTERNAL_PREFIX))
      : this.config.collections
    const extra = (this.config.alsoCarry ?? []).filter((name) => catalogue.includes(name) && !named.includes(name))
    return [...named, ...extra]
  }

  /** Snapshot when none was taken yet, then applies every captured change until none is pending. */
  async sync(): Promise<SyncStats> {
    if (this.config.mode === 'snapshot') return this.mirror()
    const started = performance.now()
    if (!this.prepared) await this.prepare()
    else if (this.config.collections.includes('*') || this.config.alsoCarry?.length) await this.followCatalogue()
    let offset = await this.readOffset()
    if (!offset.snapshotDone) {
      if (!this.config.skipSnapshot) await this.snapshot()
      await this.target.upsertMany(OFFSETS_COLLECTION, [this.offsetRow(offset.position)])
      offset = { ...offset, snapshotDone: true }
    } else if (this.config.origin && offset.origin && offset.origin !== this.config.origin) {
      // A new source master: its capture (created by prepare) holds every change from now on;
      // a mirror pass carries what happened before, including deletes.
      if (this.config.mode === 'cdc') for (const collection of this.collections) await this.mirrorCollection(collection)
      else for (const collection of this.collections) await this.mergeCollection(collection)
      await this.target.upsertMany(OFFSETS_COLLECTION, [this.offsetRow(null)])
      offset = { position: null, snapshotDone: true, origin: this.config.origin }
      this.stats.reseeds++
    }
    if (offset.position && !this.resumed) {
      // After a restart: let the source forget what the target already committed (a crash may
      // have come between the target's commit and the source's confirmation).
      await this.source.confirmChanges!(this.config.name, offset.position)
    }
    this.resumed = true
    let pendingSeen = false
    const batchSize = this.config.batchSize ?? 1000
    // Read wide (a log read can cost a scan of the retained log: PostgreSQL re-decodes from the
    // slot's restart point), apply in target transactions of about batchSize, confirm once.
    const read = (after: Position | null) =>
      this.source.readChanges!(this.config.name, {
        after,
        maxEvents: Math.max(batchSize, READ_AHEAD_EVENTS),
        lazyAfter: true,
      })
    let next: Promise<ChangeBatch> | null = read(offset.position)
    try {
      for (;;) {
        const batch: ChangeBatch = await next
        next = null
        if (!batch.position) break
        // Read (and decode) the next batch while this one is applied. The source is asked for
        // what follows this batch: nothing is confirmed before it is applied. (Not while a
        // transaction too large to hold is read in parts.)
        if (!batch.nextPart) {
          next = read(batch.position)
          next.catch(() => undefined) // its failure is reported when it is awaited
        }
        if (batch.events.length) {
          pendingSeen = true
          for (const slice of transactionSlices(batch.events, batchSize)) {
            const sliceStarted = performance.now()
            await this.applyBatch(slice.events, slice.position, batch.nextPart)
            offset = { position: slice.position, snapshotDone: true }
            const newestOfSlice = slice.events[slice.events.length - 1]!
            this.observer.batchApplied?.({
              rule: this.config.name,
              events: slice.events.length,
              durationMs: performance.now() - sliceStarted,
              lagMs: Math.max(0, Date.now() - newestOfSlice.source.ts),
            })
          }
          const newest = batch.events[batch.events.length - 1]!
          this.stats.lagMs = Math.max(0, Date.now() - newest.source.ts)
        }
        // also when only transactions the target already had were read: move the source past them
        await this.source.confirmChanges!(this.config.name, batch.position)
        next ??= read(batch.position)
      }
    } finally {
      // A failed apply never leaves a read running behind it (it would hold the capture).
      if (next) await next.catch(() => undefined)
    }
    if (!pendingSeen) this.stats.lagMs = 0
    this.stats.position = offset.position
    this.stats.lastSync = new Date()
    this.stats.duration = Math.round(performance.now() - started)
    return this.getStats()
  }

  /**
   * Picks up collections created on the source since the last sync: they join the capture
   * first, then are snapshotted, so no change of theirs falls between the two.
   */
  private async followCatalogue(): Promise<void> {
    const wanted = await this.wantedCollections()
    const added = wanted.filter((name) => !this.collections.includes(name))
    if (!added.length) return
    const known = this.collections
    await this.prepare()
    for (const collection of added) if (!known.includes(collection)) await this.copyCollection(collection)
  }

  /** Removes the source capture (slot and publication, or triggers and changelog). */
  async teardown(): Promise<void> {
    if (this.config.mode !== 'snapshot') await this.source.dropCapture!(this.config.name)
  }

  /**
   * `snapshot` mode: copies every source page into the target, then walks the target by pages
   * and deletes the rows whose keys the source no longer has (looked up by key, so the two
   * databases' key orders need not agree). Memory stays at one page.
   */
  private async mirror(): Promise<SyncStats> {
    const started = performance.now()
    await this.prepare()
    for (const collection of this.collections) await this.mirrorCollection(collection)
    this.stats.lastSync = new Date()
    this.stats.duration = Math.round(performance.now() - started)
    return this.getStats()
  }

  /** Copies a collection, then deletes the target rows whose keys the source no longer has. */
  private async mirrorCollection(collection: string): Promise<void> {
    const pageSize = this.config.batchSize ?? 1000
    const detail = this.perCollection.get(collection)!
    await this.copyCollection(collection)
    const { primaryKey } = await this.target.describeCollection(collection)
    for await (const page of scanAll(this.target, collection, { pageSize })) {
      const present = await rowsByKey(
        this.source,
        collection,
        page.map((row) => keyOfRow(row, primaryKey)),
        primaryKey,
        primaryKey,
      )
      const absent = page
        .filter((row) => !present.has(keyIdentity(row, primaryKey)))
        .map((row) => keyOfRow(row, primaryKey))
      if (absent.length) {
        await this.target.deleteMany(collection, absent)
        detail.deleted += absent.length
        this.stats.deleted += absent.length
        this.stats.recordsSynced += absent.length
      }
    }
  }

  /**
   * Bidirectional re-seed: every source row the target lacks or holds older (last writer wins
   * on the timestamp column, a newer tombstone beats it) is written to the target; nothing is
   * deleted. The target's capture sees these writes and the reverse direction drops them (the
   * source holds them already).
   */
  private async mergeCollection(collection: string): Promise<void> {
    const pageSize = this.config.batchSize ?? 1000
    const detail = this.perCollection.get(collection)!
    const { primaryKey } = await this.target.describeCollection(collection)
    const column = this.timestampColumn
    for await (const page of scanAll(this.source, collection, { pageSize })) {
      const held = await rowsByKey(
        this.target,
        collection,
        page.map((row) => keyOfRow(row, primaryKey)),
        primaryKey,
      )
      const absent = page.map((row) => keyIdentity(row, primaryKey)).filter((identity) => !held.has(identity))
      const deletedAt = this.config.tombstones
        ? await this.deletedAt(this.target, collection, absent)
        : new Map<string, number>()
      const newer = page.filter((row) => {
        const identity = keyIdentity(row, primaryKey)
        const current = held.get(identity)
        if (current) return !sameValues(row, current) && newerOrTieWinner(row, current, column)
        const deleted = deletedAt.get(identity)
        return deleted === undefined || timeOf(row, column) > deleted
      })
      if (!newer.length) continue
      await this.target.upsertMany(collection, newer)
      detail.snapshotRows += newer.length
      this.stats.recordsSynced += newer.length
    }
  }

  /** Continues the counters of an earlier runner of the same rule (a new one is made when a master changes). */
  carryStatsFrom(previous: SyncStats): void {
    const { details, reverse: _reverse, ...totals } = previous
    Object.assign(this.stats, totals, { ruleName: this.config.name })
    for (const detail of details) this.perCollection.set(detail.collection, { ...detail })
  }

  getStats(): SyncStats {
    return { ...this.stats, details: [...this.perCollection.values()].map((detail) => ({ ...detail })) }
  }

  private async readOffset(): Promise<StoredOffset> {
    const row = await this.target.findOne(OFFSETS_COLLECTION, { rule: this.config.name })
    if (!row) return { position: null, snapshotDone: false }
    return {
      position: row.position ? (JSON.parse(String(row.position)) as Position) : null,
      snapshotDone: row.snapshot_done === true,
      origin: typeof row.origin === 'string' ? row.origin : null,
    }
  }

  private offsetRow(position: Position | null): Row {
    return {
      rule: this.config.name,
      position: position ? JSON.stringify(position) : null,
      snapshot_done: true,
      origin: this.config.origin ?? null,
      updated_at: new Date(),
    }
  }

  /** Copies every collection by keyset pages. */
  private async snapshot(): Promise<void> {
    for (const collection of this.collections) await this.copyCollection(collection)
  }

  /**
   * Copies one collection page by page, reading the next page while the previous one is being
   * written (two pages in memory at most).
   */
  private async copyCollection(collection: string): Promise<void> {
    const pageSize = this.config.batchSize ?? 1000
    const detail = this.perCollection.get(collection)!
    const progress = this.observer.snapshotProgress
    const total = progress ? await this.source.count(collection) : 0
    if (await this.bulkCopy(collection, total)) return
    let done = 0
    let page = await this.source.scan(collection, { limit: pageSize })
    for (;;) {
      const next = page.next === null ? null : this.source.scan(collection, { after: page.next, limit: pageSize })
      next?.catch(() => undefined) // its failure is reported when awaited below
      if (page.rows.length) {
        await this.target.upsertMany(collection, page.rows)
        detail.snapshotRows += page.rows.length
        this.stats.recordsSynced += page.rows.length
        done += page.rows.length
        progress?.({ rule: this.config.name, collection, done, total: Math.max(total, done) })
      }
      if (!next) return
      page = await next
    }
  }

  /**
   * The fast path of a snapshot: when both databases speak the same bulk format (PostgreSQL →
   * PostgreSQL: COPY text) and the target table is empty, the rows stream from one COPY into
   * the other without being decoded. Returns false when it does not apply; a load the target
   * refuses (a pre-existing table of other types) also falls back to the row-by-row path,
   * which reports such rows precisely. Nothing is half-loaded: COPY is one statement.
   */
  private async bulkCopy(collection: string, total: number): Promise<boolean> {
    const { source, target } = this
    if (!source.bulkExport || !target.bulkImport || !source.bulkFormat || source.bulkFormat !== target.bulkFormat)
      return false
    const columns = (await source.describeCollection(collection)).columns.map((column) => column.name)
    const targetColumns = new Set((await target.describeCollection(collection)).columns.map((column) => column.name))
    if (!columns.every((column) => targetColumns.has(column))) return false
    if ((await target.scan(collection, { limit: 1 })).rows.length) return false
    const detail = this.perCollection.get(collection)!
    const progress = this.observer.snapshotProgress
    let rows: number
    try {
      const data = await source.bulkExport(collection, columns)
      rows = await target.bulkImport(
        collection,
        columns,
        data,
        progress && ((done) => progress({ rule: this.config.name, collection, done, total: Math.max(total, done) })),
      )
    } catch (error) {
      if (ReplicatorError.isInstance(error) && (error.code === 'CONNECTION_FAILED' || error.code === 'NOT_CONNECTED'))
        throw error
      return false
    }
    detail.snapshotRows += rows
    this.stats.recordsSynced += rows
    return true
  }

  /**
   * Applies whole transactions as their net effect per key (the last change of a key wins;
   * per-key order is kept), with the offset, in one target transaction. Rows the target
   * rejects go to the dead-letter table with the error; the rest of the batch still lands.
   */
  /**
   * True when every after-image is in the target's native text form and fits its table (same
   * columns, same native types): the rows then go in as the source wrote them, undecoded.
   */
  private takesNative(events: ChangeEvent[], description: CollectionDescription): boolean {
    const format = this.target.nativeTextFormat
    if (!format) return false
    for (const event of events) {
      const native = event.nativeAfter
      if (!native || native.format !== format) return false
      let fit = this.nativeFits.get(native.columns)
      if (fit?.description !== description)
        this.nativeFits.set(
          native.columns,
          (fit = { description, fits: nativeColumnsFit(native.columns, description) }),
        )
      if (!fit.fits) return false
    }
    return true
  }

  private get timestampColumn(): string {
    return this.config.timestampColumn ?? 'updatedAt'
  }

  /** Whether rows of a source table's native columns fit a target table (as described then). */
  private readonly nativeFits = new WeakMap<
    NativeRow['columns'],
    { description: CollectionDescription; fits: boolean }
  >()

  private async applyBatch(
    events: ChangeEvent[],
    position: Position,
    nextPart?: () => Promise<ChangeEvent[] | null>,
  ): Promise<void> {
    const counts: Array<() => void> = []
    await this.target.transaction(async (tx) => {
      // A source transaction too large to hold arrives in parts: all of them go into this one
      // target transaction, applied in order.
      for (let part: ChangeEvent[] | null = events; part; part = nextPart ? await nextPart() : null)
        counts.push(await this.applyPart(tx, part, position))
      await tx.upsertMany(OFFSETS_COLLECTION, [this.offsetRow(position)])
    })
    for (const count of counts) count() // counted once committed
  }

  /** Applies `events` in the open target transaction; returns what adds them to the stats. */
  private async applyPart(tx: DialectOperations, events: ChangeEvent[], position: Position): Promise<() => void> {
    // `inserted`: keys whose first change in the batch is an insert (expected new on the target)
    const net = new Map<string, NetChanges>()
    for (const event of events) {
      let changes = net.get(event.collection)
      if (!changes) {
        const { primaryKey } = await this.target.describeCollection(event.collection)
        net.set(
          event.collection,
          (changes = { upserts: new Map(), deletes: new Map(), inserted: new Set(), crossed: [], primaryKey }),
        )
      }
      const identity = keyIdentity(keyToObject(event.key, changes.primaryKey, event.collection), changes.primaryKey)
      if (event.op === 'c' && !changes.upserts.has(identity) && !changes.deletes.has(identity))
        changes.inserted.add(identity)
      if (event.op === 'd') {
        changes.upserts.delete(identity)
        changes.deletes.set(identity, event)
      } else {
        const deleted = changes.deletes.get(identity)
        if (deleted && this.config.tombstones && timeOf(event.after, this.timestampColumn) <= deleted.source.ts) {
          // An older write that crossed this delete (applied here from the other side before the
          // delete was read): the delete stands, and the source loses that row again.
          changes.crossed.push({ key: event.key, at: deleted.source.ts })
          this.stats.skipped++
          continue
        }
        changes.deletes.delete(identity)
        const earlier = changes.upserts.get(identity)
        changes.upserts.set(identity, earlier ? laterImage(earlier, event) : event)
      }
    }
    const deadLetters: Row[] = []
    const skipped = new Set<string>() // collection + key identity refused by the conflict resolution
    for (const [collection, changes] of net) {
      const description = await this.target.describeCollection(collection)
      for (const identity of await this.resolveConflicts(tx, collection, changes))
        skipped.add(`${collection}\u0000${identity}`)
      let upserts = [...changes.upserts.values()]
      if (upserts.length && tx.upsertNative && this.takesNative(upserts, description)) {
        try {
          const fresh = [...changes.upserts.keys()].every((identity) => changes.inserted.has(identity))
          await tx.upsertNative(
            collection,
            upserts.map((event) => event.nativeAfter!),
            { fresh },
          )
          upserts = []
        } catch (error) {
          // A row the target refuses: the portable path below names it and dead-letters it.
          if (!ReplicatorError.isInstance(error) || error.code !== 'ROW_REJECTED') throw error
        }
      }
      for (let attempt = 0; upserts.length && attempt < 5; attempt++) {
        try {
          await tx.upsertMany(
            collection,
            upserts.map((event) => event.after!),
          )
          break
        } catch (error) {
          if (
            !ReplicatorError.isInstance(error) ||
            error.code !== 'ROW_REJECTED' ||
            !Array.isArray(error.details.failures) ||
            !error.details.failures.length
          )
            throw error
          const failures = error.details.failures as Array<{ key: unknown; message: string }>
          const rejected = new Map(
            failures.map((failure) => [
              keyIdentity(keyToObject(failure.key, description.primaryKey, collection), description.primaryKey),
              failure.message,
            ]),
          )
          upserts = upserts.filter((event) => {
            const identity = keyIdentity(
              keyToObject(event.key, description.primaryKey, collection),
              description.primaryKey,
            )
            const message = rejected.get(identity)
            if (message === undefined) return true
            deadLetters.push(this.deadLetter(event, message, position))
            return false
          })
        }
      }
      if (changes.deletes.size)
        await tx.deleteMany(
          collection,
          [...changes.deletes.values()].map((event) => event.key),
        )
    }
    if (deadLetters.length) await tx.upsertMany(DEAD_LETTERS_COLLECTION, deadLetters)
    return this.tally(events, position, net, deadLetters, skipped)
  }

  /**
   * What applying `events` adds to the stats (dead-lettered and refused changes aside), as
   * figures: the events themselves are not kept until the commit.
   */
  private tally(
    events: ChangeEvent[],
    position: Position,
    net: Map<string, { primaryKey: string[] }>,
    deadLetters: Row[],
    skipped: Set<string>,
  ): () => void {
    const dead = new Set(deadLetters.map((letter) => letter.id))
    const counted = new Map<string, { created: number; updated: number; deleted: number; deadLettered: number }>()
    const of = (collection: string) => {
      let counts = counted.get(collection)
      if (!counts) counted.set(collection, (counts = { created: 0, updated: 0, deleted: 0, deadLettered: 0 }))
      return counts
    }
    for (const event of events) {
      if (dead.size && dead.has(this.deadLetterId(event, position))) continue
      if (skipped.size) {
        const primaryKey = net.get(event.collection)!.primaryKey
        if (
          skipped.has(
            `${event.collection}\u0000${keyIdentity(keyToObject(event.key, primaryKey, event.collection), primaryKey)}`,
          )
        )
          continue
      }
      const counts = of(event.collection)
      if (event.op === 'c' || event.op === 'r') counts.created++
      else if (event.op === 'u') counts.updated++
      else counts.deleted++
    }
    for (const letter of deadLetters) of(String(letter.collection)).deadLettered++
    return () => {
      for (const [collection, counts] of counted) {
        this.stats.created += counts.created
        this.stats.updated += counts.updated
        this.stats.deleted += counts.deleted
        this.stats.recordsSynced += counts.created + counts.updated + counts.deleted
        this.stats.deadLettered += counts.deadLettered
        this.stats.errors += counts.deadLettered
        const detail = this.perCollection.get(collection)
        if (detail) {
          detail.created += counts.created
          detail.updated += counts.updated
          detail.deleted += counts.deleted
          detail.deadLettered += counts.deadLettered
        }
      }
    }
  }

  /**
   * Drops from `changes` what the rule's conflict resolution refuses, after reading the
   * target rows of the batch's keys in the same transaction.
   */
  private async resolveConflicts(tx: DialectOperations, collection: string, changes: NetChanges): Promise<string[]> {
    const policy = this.config.conflictResolution ?? 'source-wins'
    const refused: string[] = []
    if ((policy === 'source-wins' && !this.config.suppressNoOps) || collection.startsWith(INTERNAL_PREFIX))
      return refused
    const { primaryKey } = changes
    const withDeletes = policy === 'target-wins' || Boolean(this.config.tombstones)
    const keys = [...changes.upserts.values(), ...(withDeletes ? changes.deletes.values() : [])].map(
      (event) => event.key,
    )
    const existing = await rowsByKey(tx, collection, keys, primaryKey)
    const column = this.timestampColumn
    const refuse = (map: Map<string, ChangeEvent>, identity: string) => {
      map.delete(identity)
      refused.push(identity)
      this.stats.skipped++
    }
    for (const [identity, event] of changes.upserts) {
      const current = existing.get(identity)
      if (!current) continue
      let keep: boolean
      if (this.config.suppressNoOps && sameValues(event.after ?? {}, current))
        keep = false // already there: the echo of our own apply
      else if (policy === 'timestamp') keep = newerOrTieWinner(event.after ?? {}, current, column)
      else keep = policy === 'source-wins'
      if (!keep) refuse(changes.upserts, identity)
    }
    if (policy === 'target-wins') {
      for (const identity of [...changes.deletes.keys()]) if (existing.has(identity)) refuse(changes.deletes, identity)
    }
    if (this.config.tombstones) await this.resolveWithTombstones(tx, collection, changes, existing, refuse)
    return refused
  }

  /**
   * Bidirectional rules: a delete is dated by its commit on the side where it was made, and
   * weighed against the other side's row like an update (the later one wins; a tie goes to
   * the delete). A delete that wins is remembered on both sides (`_replicator_tombstones`): an
   * older upsert of that row arriving later — it crossed the delete — is refused instead of
   * bringing the row back, and the side it came from, which still holds the older row, has it
   * deleted too. So both sides end with the same answer whichever way the two changes cross.
   */
  private async resolveWithTombstones(
    tx: DialectOperations,
    collection: string,
    changes: NetChanges,
    existing: Map<string, Row>,
    refuse: (map: Map<string, ChangeEvent>, identity: string) => void,
  ): Promise<void> {
    const rule = this.config.tombstones!
    const column = this.timestampColumn
    const { primaryKey } = changes
    const timeOfRow = (row: Row | null | undefined) => timeOf(row, column)
    const tombstones: Row[] = []
    for (const [identity, event] of [...changes.deletes]) {
      const current = existing.get(identity)
      if (!current) continue // nothing to delete here (also the echo of a delete applied there)
      if (timeOfRow(current) > event.source.ts) {
        refuse(changes.deletes, identity)
        continue
      } // this side's row is newer
      tombstones.push({
        id: tombstoneId(rule, collection, identity),
        rule,
        collection,
        row_key: describeKey(event.key),
        deleted_at: new Date(event.source.ts),
      })
    }
    // upserts of rows this side does not hold: a delete of theirs may be newer
    const absent = [...changes.upserts].filter(([identity]) => !existing.has(identity))
    const deletedAt = await this.deletedAt(
      tx,
      collection,
      absent.map(([identity]) => identity),
    )
    const stale = [...changes.crossed]
    for (const [identity, event] of absent) {
      const at = deletedAt.get(identity)
      if (at === undefined || timeOfRow(event.after) > at) continue
      refuse(changes.upserts, identity)
      stale.push({ key: event.key, at })
    }
    if (tombstones.length) {
      await tx.upsertMany(TOMBSTONES_COLLECTION, tombstones)
      await this.source.upsertMany(TOMBSTONES_COLLECTION, tombstones)
    }
    // The source still holds the row the delete beat: delete it there too, unless it changed
    // since (one conditional statement per row). Done before this batch commits: a failure
    // makes the batch, and this, run again.
    for (const { key, at } of stale) {
      const byKey = keyToObject(key, primaryKey, collection)
      await this.source.delete(collection, {
        $and: [byKey, { $or: [{ [column]: null }, { [column]: { $lte: new Date(at) } }] }],
      })
    }
  }

  /** When the rule's tombstones in `database` say these rows (key identities) were deleted, in ms. */
  private async deletedAt(
    database: DialectOperations,
    collection: string,
    identities: string[],
  ): Promise<Map<string, number>> {
    const byId = new Map(
      identities.map((identity) => [tombstoneId(this.config.tombstones!, collection, identity), identity]),
    )
    const ids = [...byId.keys()]
    const times = new Map<string, number>()
    for (let start = 0; start < ids.length; start += 500) {
      for (const row of await database.find(TOMBSTONES_COLLECTION, { id: { $in: ids.slice(start, start + 500) } }))
        times.set(byId.get(String(row.id))!, timeOf(row, 'deleted_at'))
    }
    return times
  }

  private deadLetterId(event: ChangeEvent, position: Position): string {
    return `${this.config.name}:${JSON.stringify(position.value)}:${event.collection}:${describeKey(event.key)}`.slice(
      0,
      255,
    )
  }

  private deadLetter(event: ChangeEvent, message: string, position: Position): Row {
    return {
      id: this.deadLetterId(event, position),
      rule: this.config.name,
      collection: event.collection,
      row_key: describeKey(event.key),
      event: eventJson(event),
      error: message,
      at: new Date(),
    }
  }
}

/**
 * The two directions of a bidirectional rule: source → target (with the snapshot) and
 * target → source (streaming only). Both drop changes the other side already holds, so a row
 * applied by one direction and captured again stops there.
 */
export function bidirectionalConfigs(config: ReplicationRuleConfig): [ReplicationRuleConfig, ReplicationRuleConfig] {
  return [
    { ...config, suppressNoOps: true, tombstones: config.name },
    {
      ...config,
      name: `${config.name}.r`,
      source: config.target,
      target: config.source,
      suppressNoOps: true,
      skipSnapshot: true,
      tombstones: config.name,
    },
  ]
}

/** Throws CONFIG_INVALID for a malformed rule. */
export function validateRule(config: ReplicationRuleConfig): void {
  const where = `Rule "${String(config?.name)}"`
  if (!config || typeof config.name !== 'string' || config.name.trim() === '')
    throw new ReplicatorError('CONFIG_INVALID', 'A replication rule needs a non-empty name.')
  if (!/^[A-Za-z0-9_.-]{1,48}$/.test(config.name))
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `${where}: names are 1 to 48 letters, digits, '_', '.' or '-' (they name slots and triggers).`,
    )
  if (typeof config.source !== 'string' || typeof config.target !== 'string' || !config.source || !config.target)
    throw new ReplicatorError('CONFIG_INVALID', `${where} needs a source and a target project.`)
  if (config.source === config.target)
    throw new ReplicatorError('CONFIG_INVALID', `${where}: source and target are the same project.`)
  if (config.mode !== 'cdc' && config.mode !== 'snapshot' && config.mode !== 'bidirectional') {
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `${where}: mode ${JSON.stringify(config.mode)} is unknown; use 'cdc' (snapshot then streaming), 'snapshot' (full mirror on each sync) or 'bidirectional'.`,
    )
  }
  if (config.mode === 'bidirectional' && config.name.length > 46)
    throw new ReplicatorError('CONFIG_INVALID', `${where}: names of bidirectional rules are at most 46 characters.`)
  if (config.mode === 'bidirectional' && config.conflictResolution !== 'timestamp') {
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `${where}: a bidirectional rule needs conflictResolution: 'timestamp' (with a timestampColumn, default updatedAt): with writes on both sides, only a rule both directions agree on converges.`,
    )
  }
  if (!Array.isArray(config.collections) || config.collections.length === 0)
    throw new ReplicatorError('CONFIG_INVALID', `${where} needs collections (names, or ['*']).`)
  if (
    config.conflictResolution !== undefined &&
    !['source-wins', 'target-wins', 'timestamp'].includes(config.conflictResolution)
  ) {
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `${where}: conflictResolution ${JSON.stringify(config.conflictResolution)} is unknown; use 'source-wins', 'target-wins' or 'timestamp'.`,
    )
  }
  if (config.batchSize !== undefined && !(Number.isInteger(config.batchSize) && config.batchSize > 0))
    throw new ReplicatorError('CONFIG_INVALID', `${where}: batchSize must be a positive integer.`)
}

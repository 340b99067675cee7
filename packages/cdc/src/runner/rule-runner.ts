import {
  collectionSchemaOf,
  ReplicatorError,
  type ChangeBatch,
  type CollectionDescription,
  type Dialect,
  type Position,
} from '@mostajs/replicator-core'
import { validateRule, type RunnerConfig } from '../rule-config.js'
import { applyBatch, transactionSlices } from './apply-batch.js'
import {
  copiedCollections,
  copyCuts,
  ensureInternalTables,
  forgetRule,
  INTERNAL_PREFIX,
  markCopied,
  readOffset,
} from './internal-tables.js'
import { RuleLease, type LeaseHolder, type LeaseOptions } from './rule-lease.js'
import { mergeCollection, mirrorCollection } from './mirror.js'
import type { RuleContext } from './rule-context.js'
import { copyCollection } from './snapshot.js'
import {
  emptyCollectionStats,
  emptySyncStats,
  syncStatsOf,
  type RuleCounters,
  type CollectionStats,
  type RuleObserver,
  type SyncStats,
} from './sync-stats.js'

/** Events read from the source log at once (applied in slices of batchSize). */
const READ_AHEAD_EVENTS = 20_000

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
  /** The collections of this preparation were compared with those the target has copied. */
  private copiesChecked = false
  private readonly stats: RuleCounters
  private readonly perCollection = new Map<string, CollectionStats>()
  /** Tables of the source catalogue (`['*']`) that cannot be carried, with the reason. */
  private readonly setAside = new Map<string, string>()
  private readonly context: RuleContext
  /** Who applies this rule now, when it is another process (this one waits). */
  private standby: LeaseHolder | null = null

  constructor(
    readonly config: RunnerConfig,
    private readonly source: Dialect,
    private readonly target: Dialect,
    observer: RuleObserver = {},
    lease: LeaseOptions = {},
  ) {
    const { alsoCarry: _a, suppressNoOps: _s, skipSnapshot: _k, tombstones: _t, origin: _o, ...rule } = config
    validateRule(rule)
    this.stats = emptySyncStats(config.name)
    this.context = {
      config,
      source,
      target,
      observer,
      stats: this.stats,
      perCollection: this.perCollection,
      timestampColumn: config.timestampColumn ?? 'updatedAt',
      lease: new RuleLease(config.name, target, lease),
      cuts: new Map(),
    }
    if (config.mode !== 'snapshot' && !source.capture) {
      throw new ReplicatorError(
        'NOT_SUPPORTED',
        `Rule "${config.name}": the source (${source.name}) has no change capture; use mode 'snapshot', or a source that has one.`,
        { details: { rule: config.name, dialect: source.name } },
      )
    }
  }

  /**
   * Checks every collection can be carried (a compatibility report listing each column of no
   * portable type), creates missing target tables from the source's columns, and sets up the
   * source capture. Idempotent.
   */
  async prepare(): Promise<void> {
    const wanted = await this.wantedCollections()
    const uncapturable = new Map(
      this.config.mode === 'snapshot' || !this.source.capture?.uncapturable
        ? []
        : (await this.source.capture.uncapturable(wanted)).map(
            ({ collection, reason }) => [collection, reason] as const,
          ),
    )
    const followsCatalogue = this.config.collections.includes('*')
    const descriptions: CollectionDescription[] = []
    const problems: string[] = []
    for (const collection of wanted) {
      const description = await this.source.describeCollection(collection)
      const reasons = description.columns
        .filter((column) => column.type === 'unknown')
        .map((column) => `${collection}.${column.name} (${column.nativeType}) has no portable type`)
      if (uncapturable.has(collection)) reasons.push(uncapturable.get(collection)!)
      else if (!description.primaryKey.length) reasons.push(...this.keylessProblems(collection))
      if (reasons.length && followsCatalogue && !this.config.collections.includes(collection)) {
        // `['*']` follows the catalogue: a table that cannot be carried is set aside, with its
        // reason in the stats, and the other tables flow
        this.setAside.set(collection, reasons.join('; '))
        continue
      }
      problems.push(...reasons)
      this.checkTimestampColumn(collection, description)
      descriptions.push(description)
    }
    if (problems.length) {
      throw new ReplicatorError(
        'TYPE_UNSUPPORTED',
        `Rule "${this.config.name}" cannot carry: ${problems.join('; ')}. Give these columns a portable type, a primary key, or leave the collection out.`,
        { details: { rule: this.config.name, problems } },
      )
    }
    const carried = descriptions.map((description) => description.name)
    for (const description of descriptions) await this.target.ensureCollection(collectionSchemaOf(description))
    await ensureInternalTables(this.context)
    if (this.config.mode !== 'snapshot') {
      this.context.cuts.clear()
      for (const [collection, cut] of await copyCuts(this.context)) this.context.cuts.set(collection, cut)
    }
    if (this.config.mode !== 'snapshot')
      await this.source.capture!.setup({ name: this.config.name, collections: carried })
    this.collections = carried
    this.prepared = true
    this.copiesChecked = false
    for (const collection of carried)
      if (!this.perCollection.has(collection)) this.perCollection.set(collection, emptyCollectionStats(collection))
  }

  /** Why a table without a primary key cannot be carried by this rule (none when it can). */
  private keylessProblems(collection: string): string[] {
    if (this.config.mode === 'bidirectional' || this.config.conflictResolution === 'timestamp')
      return [`${collection} has no primary key, and conflicts between two writers are resolved per key`]
    const capture = this.source.capture
    if (this.config.mode === 'cdc' && !capture?.readExact)
      return [`${collection} has no primary key, and ${this.source.name} change capture cannot carry such tables`]
    if (!this.target.insertMany || !this.target.deleteOne || !this.target.replaceOne)
      return [`${collection} has no primary key, and ${this.target.name} cannot write such tables`]
    return []
  }

  /** `timestamp` conflict resolution needs the timestamp column in every carried table. */
  private checkTimestampColumn(collection: string, description: CollectionDescription): void {
    if (this.config.conflictResolution !== 'timestamp' || collection.startsWith(INTERNAL_PREFIX)) return
    const column = this.context.timestampColumn
    if (description.columns.some((candidate) => candidate.name === column && candidate.type === 'timestamp')) return
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `Rule "${this.config.name}": conflictResolution 'timestamp' compares "${column}", and collection "${collection}" has no timestamp column of that name. Set timestampColumn.`,
      { details: { rule: this.config.name, collection } },
    )
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
    // one writer per rule: while another process holds the lease, this one only waits
    this.standby = await this.context.lease.acquire()
    if (this.standby) return this.getStats()
    if (this.config.collections.includes('*') || this.config.alsoCarry?.length) await this.followCatalogue()
    try {
      return await this.applyChanges(started)
    } catch (error) {
      if (!ReplicatorError.isInstance(error) || error.code !== 'CAPTURE_LOST') throw error
      await this.recoverLostCapture(error)
      return this.applyChanges(started)
    }
  }

  /**
   * The source no longer holds the capture's position (an invalidated slot, purged binary
   * logs): changes were lost there, never silently here. The capture is recreated and the
   * target re-seeded by a mirror pass (deletes included); the rule goes on from the new capture.
   */
  private async recoverLostCapture(error: ReplicatorError): Promise<void> {
    await this.source.capture!.drop(this.config.name)
    await this.source.capture!.setup({ name: this.config.name, collections: this.collections })
    await this.reseed()
    this.context.observer.captureLost?.({ rule: this.config.name, reason: error.message })
  }

  /** Carries the source's current rows (deletes included) and starts over from the capture made just before. */
  private async reseed(): Promise<void> {
    if (this.config.mode === 'cdc')
      for (const collection of this.collections) await mirrorCollection(this.context, collection)
    else for (const collection of this.collections) await mergeCollection(this.context, collection)
    await this.writeOffset(null)
    this.stats.reseeds++
  }

  /** Snapshot or re-seed when due, then every captured change until none is pending. */
  private async applyChanges(started: number): Promise<SyncStats> {
    let offset = await readOffset(this.context)
    if (!offset.snapshotDone) {
      if (!this.config.skipSnapshot) await this.snapshot()
      await markCopied(this.context, this.collections)
      this.copiesChecked = true
      await this.writeOffset(offset.position)
      offset = { ...offset, snapshotDone: true }
    } else if (this.config.origin && offset.origin && offset.origin !== this.config.origin) {
      // A new source master: its capture (created by prepare) holds every change from now on;
      // a mirror pass carries what happened before, including deletes.
      await this.reseed()
      offset = { position: null, snapshotDone: true, origin: this.config.origin }
    } else {
      // once per preparation, not per sync: the collections only change when the rule is prepared
      if (!this.copiesChecked) await this.copyAddedCollections()
      this.copiesChecked = true
    }
    if (offset.position && !this.resumed) {
      // After a restart: let the source forget what the target already committed (a crash may
      // have come between the target's commit and the source's confirmation).
      await this.source.capture!.confirm(this.config.name, offset.position)
    }
    this.resumed = true
    let pendingSeen = false
    const batchSize = this.config.batchSize ?? 1000
    // Read wide (a log read can cost a scan of the retained log: PostgreSQL re-decodes from the
    // slot's restart point), apply in target transactions of about batchSize, confirm once.
    const read = (after: Position | null) =>
      this.source.capture!.read(this.config.name, {
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
        if (batch.caughtUp) {
          // nothing of this rule up to the source's current end: let the source forget it
          await this.source.capture!.confirm(this.config.name, batch.position)
          break
        }
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
            await applyBatch(this.context, slice.events, slice.position, batch.nextPart)
            offset = { position: slice.position, snapshotDone: true }
            const newestOfSlice = slice.events[slice.events.length - 1]!
            this.context.observer.batchApplied?.({
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
        await this.source.capture!.confirm(this.config.name, batch.position)
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

  /** Stores the offset outside a batch (after a snapshot or a re-seed), fenced by the lease. */
  private async writeOffset(position: Position | null): Promise<void> {
    await this.target.transaction((tx) => this.context.lease.writeOffset(tx, position, this.config.origin ?? null))
  }

  /** Lets another process take the rule over at once (this one stops applying it). */
  async release(): Promise<void> {
    await this.context.lease.release()
  }

  /**
   * Picks up collections created on the source since the last sync: they join the capture
   * first, then are snapshotted, so no change of theirs falls between the two.
   */
  private async followCatalogue(): Promise<void> {
    const wanted = await this.wantedCollections()
    const added = wanted.filter((name) => !this.collections.includes(name) && !this.setAside.has(name))
    if (!added.length) return
    const known = this.collections
    await this.prepare()
    for (const collection of added) if (!known.includes(collection)) await copyCollection(this.context, collection)
    await markCopied(this.context, added)
  }

  /**
   * Copies the collections that joined the rule since its snapshot (their changes are captured
   * already: `prepare` added them to the capture first). A rule whose copies were never
   * recorded (an earlier version) had all of its collections copied.
   */
  private async copyAddedCollections(): Promise<void> {
    const copied = await copiedCollections(this.context)
    const added = copied.size ? this.collections.filter((collection) => !copied.has(collection)) : []
    if (!this.config.skipSnapshot) for (const collection of added) await copyCollection(this.context, collection)
    if (added.length || !copied.size) await markCopied(this.context, copied.size ? added : this.collections)
  }

  /**
   * Removes the source capture (slot and publication, or triggers and changelog) and what the
   * target keeps of the rule (its offset), so the same name added again starts over.
   */
  async teardown(): Promise<void> {
    if (this.config.mode !== 'snapshot') await this.source.capture!.drop(this.config.name)
    await this.context.lease.release()
    await forgetRule(this.context)
  }

  /**
   * `snapshot` mode: copies every source page into the target, then walks the target by pages
   * and deletes the rows whose keys the source no longer has (looked up by key, so the two
   * databases' key orders need not agree). Memory stays at one page.
   */
  private async mirror(): Promise<SyncStats> {
    const started = performance.now()
    await this.prepare()
    this.standby = await this.context.lease.acquire()
    if (this.standby) return this.getStats()
    for (const collection of this.collections) await mirrorCollection(this.context, collection)
    this.stats.lastSync = new Date()
    this.stats.duration = Math.round(performance.now() - started)
    return this.getStats()
  }

  /** Copies every collection by keyset pages. */
  private async snapshot(): Promise<void> {
    for (const collection of this.collections) await copyCollection(this.context, collection)
  }

  /** Continues the counters of an earlier runner of the same rule (a new one is made when a master changes). */
  carryStatsFrom(previous: SyncStats): void {
    const { details, reverse: _reverse, setAside: _setAside, standby: _standby, ...totals } = previous
    Object.assign(this.stats, totals, { ruleName: this.config.name })
    for (const detail of details) this.perCollection.set(detail.collection, { ...detail })
  }

  getStats(): SyncStats {
    const setAside = [...this.setAside].map(([collection, reason]) => ({ collection, reason }))
    return syncStatsOf({
      ...this.stats,
      details: [...this.perCollection.values()].map((detail) => ({ ...detail })),
      ...(setAside.length ? { setAside } : {}),
      ...(this.standby ? { standby: { ...this.standby } } : {}),
    })
  }
}

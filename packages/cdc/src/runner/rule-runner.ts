import { collectionSchemaOf, ReplicatorError, type Dialect, type Position } from '@mostajs/replicator-core'
import { validateRule, withRuleDefaults, type RunnerConfig } from '../rule-config.js'
import {
  copiedCollections,
  copyCuts,
  ensureInternalTables,
  forgetRule,
  markCopied,
  readOffset,
} from './internal-tables.js'
import { RuleLease, type LeaseHolder, type LeaseOptions } from './rule-lease.js'
import { mergeCollection, mirrorCollection } from './mirror.js'
import { preflight, wantedCollections } from './preflight.js'
import type { RuleContext } from './rule-context.js'
import { copyCollection } from './snapshot.js'
import { streamBatches } from './stream-batches.js'
import {
  emptyCollectionStats,
  emptySyncStats,
  syncStatsOf,
  type RuleCounters,
  type CollectionStats,
  type RuleObserver,
  type SyncStats,
} from './sync-stats.js'

/**
 * Runs one replication rule between two connected dialects: checks what it can carry
 * (`preflight`), prepares the target tables and the source capture, snapshots by keyset pages,
 * then applies captured changes in batches (`streamBatches`). Each batch is one target
 * transaction that also stores the rule's offset, and the source only forgets changes after
 * that commit: a crash can neither lose nor double-apply a batch.
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
      config: withRuleDefaults(config),
      source,
      target,
      observer,
      stats: this.stats,
      perCollection: this.perCollection,
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
    const { carried: descriptions, setAside } = await preflight(this.context, await wantedCollections(this.context))
    for (const [collection, reason] of setAside) this.setAside.set(collection, reason)
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
    const { position, changesSeen } = await streamBatches(this.context, offset.position)
    if (!changesSeen) this.stats.lagMs = 0
    this.stats.position = position
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
    const wanted = await wantedCollections(this.context)
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

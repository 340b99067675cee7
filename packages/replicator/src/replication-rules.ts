import { type CaptureBacklog, type ChangeStream } from '@mostajs/replicator-core'
import {
  managedFeedName,
  openChangeStream,
  type OpenChangeStreamOptions,
  type ReplicationRuleConfig,
  type ResolvedRuleConfig,
  type RuleProgress,
  type RuleSet,
  type StreamState,
  type SyncStats,
} from '@mostajs/replicator-cdc'
import type { ManagerHost } from './manager-host.js'
import type { ResolvedOptions } from './options.js'
import { masterOf } from './project-state.js'
import type { Topology } from './topology.js'
import type { RetentionWarning } from './types.js'

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`

/** Change data capture: replication rules, their streams and stats, change streams, capture backlogs and retention. */
export class ReplicationRules {
  private retention = new Map<string, RetentionWarning>()
  private retentionTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly host: ManagerHost,
    private readonly options: ResolvedOptions,
    private readonly topology: Topology,
    private readonly ruleSet: RuleSet,
  ) {}

  /**
   * Adds a change-data-capture rule from the master of `source` to the master of `target`
   * (any two database kinds). The rule is registered at once (a malformed rule or an unknown
   * project throws here); its preparation (column check, target tables, source capture) runs
   * in the background, and the returned promise settles with it. `sync` waits for it.
   *
   * @example
   * rm.addReplicationRule({ name: 'users-to-analytics', source: 'shop', target: 'analytics', mode: 'cdc', collections: ['users'] })
   * const stats = await rm.sync('users-to-analytics')
   */
  addReplicationRule(config: ReplicationRuleConfig): Promise<void> {
    return this.ruleSet.add(config)
  }

  /** Removes a rule and what its capture holds on the source (replication slot and publication, or triggers). */
  async removeReplicationRule(name: string): Promise<void> {
    await this.ruleSet.remove(name)
  }

  /** The replication rules, with their defaults filled in (`enabled`, `conflictResolution`, `batchSize`, …). */
  listRules(): ResolvedRuleConfig[] {
    return this.ruleSet.list()
  }

  /** Snapshot (first time), then applies every pending captured change; resolves with the rule's stats. */
  async sync(name: string): Promise<SyncStats> {
    return this.ruleSet.sync(name)
  }

  /**
   * Streams a rule continuously: applies pending changes every `intervalMs` (default the
   * manager's `ruleIntervalMs`, 200 ms). Errors are reported on 'error' and retried with
   * backoff; the offset only advances with applied batches.
   */
  async startRule(name: string, options: { intervalMs?: number } = {}): Promise<void> {
    this.ruleSet.start(name, options)
  }

  /** Stops a rule's continuous streaming (after its current batch). */
  async stopRule(name: string): Promise<void> {
    await this.ruleSet.stop(name)
  }

  /** Counters of a rule (zeros before its first sync). */
  getSyncStats(name: string): SyncStats {
    return this.ruleSet.stats(name)
  }

  /** What a rule's target has stored, so it survives restarts: position applied last, when, dead letters. */
  async getRuleProgress(name: string): Promise<RuleProgress> {
    return this.ruleSet.progress(name)
  }

  /** A streaming loop by rule name (or `managed.<project>.<replica>`); null when it is not streaming. */
  getStreamState(name: string): StreamState | null {
    return this.ruleSet.streamState(name)
  }

  /** Every streaming loop: rules (and their reverse direction) and managed replica feeds. */
  listStreams(): StreamState[] {
    return this.ruleSet.listStreams()
  }

  /**
   * The captured changes of a project's master as an async iterable (at least once: a batch
   * is confirmed when the loop has gone past it). See `openChangeStream`.
   */
  async openChangeStream(project: string, options: OpenChangeStreamOptions): Promise<ChangeStream> {
    return openChangeStream(this.topology.master(project).dialect, options)
  }

  /** What each capture holds on its source (WAL retained by a slot, unconfirmed changelog rows). */
  async captureBacklogs(): Promise<Array<{ capture: string; source: string } & CaptureBacklog>> {
    const captures = this.ruleSet.captures()
    for (const state of this.topology.projects.values())
      for (const entry of this.topology.feeds.managedSlaves(state))
        captures.push({ capture: managedFeedName(state.name, entry.config.name), project: state.name })
    const found: Array<{ capture: string; source: string } & CaptureBacklog> = []
    for (const { capture, project } of captures) {
      const state = this.topology.projects.get(project)
      const master = state && masterOf(state)
      if (!master?.connected || !master.dialect.capture) continue
      const backlog = await master.dialect.capture!.backlog(capture).catch(() => null)
      if (backlog) found.push({ capture, source: master.label, ...backlog })
    }
    return found
  }

  /**
   * Checks what every capture holds on its source against `maxRetainedWalBytes` and the slot's
   * `wal_status`; emits `capture.retention` for each capture newly over, and returns all those
   * over now (also run every `retentionCheckIntervalMs`).
   */
  async checkCaptureRetention(): Promise<RetentionWarning[]> {
    const limit = this.options.maxRetainedWalBytes
    const now = new Map<string, RetentionWarning>()
    for (const backlog of await this.captureBacklogs()) {
      const retained = backlog.retainedBytes ?? null
      let reason: string | null = null
      if (backlog.walStatus === 'lost')
        reason = 'its slot was invalidated (the WAL it needed is gone); the rule re-seeds at its next sync'
      else if (backlog.walStatus === 'unreserved')
        reason = `its slot's WAL is about to be removed (wal_status unreserved, ${mb(Number(retained))} held)`
      else if (retained !== null && retained > limit)
        reason = `holds ${mb(retained)} of WAL on its source (limit ${mb(limit)}): is its rule running?`
      if (!reason) continue
      const warning = {
        capture: backlog.capture,
        source: backlog.source,
        retainedBytes: retained,
        walStatus: backlog.walStatus ?? null,
        reason,
      }
      now.set(backlog.capture, warning)
      if (!this.retention.has(backlog.capture)) this.host.emit('capture.retention', warning)
    }
    this.retention = now
    return [...now.values()]
  }

  /** The captures over their retention limit at the last check (see `checkCaptureRetention`). */
  getRetentionWarnings(): RetentionWarning[] {
    return [...this.retention.values()]
  }

  /** Starts the periodic retention check, once (the topology started monitoring a project). */
  startRetentionMonitor(): void {
    if (this.retentionTimer) return
    this.retentionTimer = setInterval(() => {
      this.checkCaptureRetention().catch((error: unknown) => this.host.report(error))
    }, this.options.retentionCheckIntervalMs)
    this.retentionTimer.unref()
  }

  /** Stops the periodic retention check (the manager is closing). */
  stopRetentionMonitor(): void {
    clearInterval(this.retentionTimer)
    this.retentionTimer = undefined
  }
}

import { ReplicatorError, type Dialect } from '@mostajs/replicator-core'
import {
  bidirectionalConfigs,
  validateRule,
  withRuleDefaults,
  type ReplicationRuleConfig,
  type ResolvedRuleConfig,
  type RunnerConfig,
} from './rule-config.js'
import { DEAD_LETTERS_COLLECTION, nullWhenMissing, OFFSETS_COLLECTION } from './runner/internal-tables.js'
import type { LeaseOptions } from './runner/rule-lease.js'
import { RuleRunner } from './runner/rule-runner.js'
import { emptySyncStats, syncStatsOf, type RuleObserver, type SyncStats } from './runner/sync-stats.js'
import { StreamLoop, type StreamState } from './stream-loop.js'

/** The master of a project as a rule sees it. */
export interface RuleEndpoint {
  dialect: Dialect
  /** `project/replica`: the identity stored with a rule's offset. */
  label: string
}

/** What a rule set needs from the topology that holds it. */
export interface RuleSetHost {
  /** The master of `project`; throws REPLICA_NOT_FOUND when it has none. */
  master(project: string): RuleEndpoint
  /** Problems of background work (streaming loops, failed preparations). */
  report(error: unknown): void
  /** The set of rules changed (persist it). */
  changed(): void
  observer: RuleObserver
  /** Streaming period of rules started without one (ms). */
  defaultIntervalMs: number
  /** This manager's lease identity and length (one process applies a rule at a time). */
  lease?: LeaseOptions
}

/** Result of `getRuleProgress`. */
export interface RuleProgress {
  rule: string
  /** Source position applied last, as stored in the target with the rows (null before any change). */
  position: SyncStats['position']
  appliedAt: Date | null
  /** Rows kept in `_replicator_dead_letters` for this rule. */
  deadLetters: number
}

/** Name of the internal rule that feeds a managed replica (it names its capture). */
export function managedFeedName(project: string, replica: string): string {
  return `managed.${project}.${replica}`.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 48)
}

/** Everything the set holds for one rule. */
interface RuleRecord {
  config: ReplicationRuleConfig
  /** Source → target runner, once made (prepared by `add`, or on first use). */
  forward?: RuleRunner
  /** Target → source runner of a bidirectional rule. */
  reverse?: RuleRunner
  /** The preparation `add` started, while it runs. */
  preparing?: Promise<void>
  /** The streaming loops while the rule streams (`reverse`: a bidirectional rule's other direction). */
  streams?: { forward: StreamLoop; reverse?: StreamLoop }
  /** Streaming period the rule was started with (kept when a promotion restarts it). */
  intervalMs?: number
}

/** A managed replica's feed: its runner, its streaming period and loop. */
interface FeedRecord {
  runner: RuleRunner
  intervalMs: number
  stream?: StreamLoop
}

/**
 * The replication rules of a manager: one record per rule (its config, a runner per
 * direction, its streaming loops), and the feeds of managed replicas with the same engine.
 * Loops retry with backoff; a promotion moves every rule of its project to the new master.
 * Rules are registered at once; their runners are prepared on first use.
 */
export class RuleSet {
  /** By name, in the order they were added. */
  private readonly rules = new Map<string, RuleRecord>()
  /** Managed replica feeds, by key (one per replica). */
  private readonly feeds = new Map<string, FeedRecord>()

  constructor(private readonly host: RuleSetHost) {}

  /**
   * Registers a rule now (a malformed rule, a taken name or an unknown project throw at once)
   * and prepares it: target tables, source capture. The returned promise settles with the
   * preparation; a rule whose preparation fails is removed again, and the failure is also
   * reported, so a caller that does not await it loses nothing silently.
   */
  add(config: ReplicationRuleConfig): Promise<void> {
    validateRule(config)
    if (this.rules.has(config.name))
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `Rule "${config.name}" already exists; remove it first or pick another name.`,
        { details: { rule: config.name } },
      )
    this.host.master(config.source)
    this.host.master(config.target)
    const record: RuleRecord = { config: { ...config } }
    this.rules.set(config.name, record)
    this.host.changed()
    const ready = this.prepare(record).finally(() => (record.preparing = undefined))
    record.preparing = ready
    ready.catch((error: unknown) => {
      if (this.rules.get(config.name) === record) this.rules.delete(config.name)
      this.host.changed()
      this.host.report(error)
    })
    return ready
  }

  private async prepare(record: RuleRecord): Promise<void> {
    const forward = this.runnerFor(record.config)
    await forward.prepare()
    record.forward = forward
    const reverse = this.reverseRunnerFor(record.config)
    if (reverse) {
      await reverse.prepare()
      record.reverse = reverse
    }
  }

  /** Adds rules read from a tree file (prepared on first use); names already known are kept. */
  load(rules: ReplicationRuleConfig[]): void {
    for (const rule of rules) if (!this.rules.has(rule.name)) this.rules.set(rule.name, { config: { ...rule } })
  }

  /** Removes a rule, its streams and what its capture holds on the source. */
  async remove(name: string): Promise<void> {
    const record = this.require(name)
    await record.preparing?.catch(() => undefined)
    await this.stopStreams(record)
    await (record.forward ?? this.runnerFor(record.config)).teardown()
    await (record.reverse ?? this.reverseRunnerFor(record.config))?.teardown()
    this.rules.delete(name)
    this.host.changed()
  }

  /** The rules as written (for the tree file). */
  stored(): ReplicationRuleConfig[] {
    return [...this.rules.values()].map((record) => ({ ...record.config }))
  }

  /** The rules with their defaults filled in. */
  list(): ResolvedRuleConfig[] {
    return [...this.rules.values()].map((record) => withRuleDefaults(record.config))
  }

  /** Snapshot (first time), then every pending captured change; both directions of a bidirectional rule. */
  async sync(name: string): Promise<SyncStats> {
    const record = this.require(name)
    await record.preparing
    const forward = await (await this.preparedRunner(record, 'forward')).sync()
    if (record.config.mode !== 'bidirectional') return forward
    return { ...forward, reverse: await (await this.preparedRunner(record, 'reverse')).sync() }
  }

  private async preparedRunner(record: RuleRecord, direction: 'forward' | 'reverse'): Promise<RuleRunner> {
    let runner = record[direction]
    if (!runner) {
      runner = direction === 'forward' ? this.runnerFor(record.config) : this.reverseRunnerFor(record.config)!
      await runner.prepare()
      record[direction] = runner
    }
    return runner
  }

  /** Streams a rule continuously (both directions of a bidirectional rule). */
  start(name: string, options: { intervalMs?: number } = {}): void {
    const record = this.require(name)
    if (record.streams) return
    const intervalMs = options.intervalMs ?? record.intervalMs ?? this.host.defaultIntervalMs
    record.intervalMs = intervalMs
    const ready = () => record.preparing ?? Promise.resolve()
    record.forward ??= this.runnerFor(record.config)
    record.streams = { forward: this.streamOf(record.forward, 'rule', intervalMs, ready) }
    if (record.config.mode === 'bidirectional') {
      record.reverse ??= this.reverseRunnerFor(record.config)!
      record.streams.reverse = this.streamOf(record.reverse, 'rule', intervalMs, ready)
    }
  }

  /** Stops a rule's continuous streaming (after its current batch). */
  async stop(name: string): Promise<void> {
    const record = this.require(name)
    await this.stopStreams(record)
    // another process may take the rule over at once rather than after the lease
    await record.forward?.release()
    await record.reverse?.release()
  }

  /** Whether a rule streams continuously. */
  isStreaming(name: string): boolean {
    return this.rules.get(name)?.streams !== undefined
  }

  /** Feeds a managed replica from its master with the same engine (key: one per replica). */
  startFeed(key: string, config: RunnerConfig, source: Dialect, target: Dialect, intervalMs: number): void {
    if (this.feeds.get(key)?.stream) return
    const runner = new RuleRunner(config, source, target, this.host.observer, this.host.lease)
    this.feeds.set(key, { runner, intervalMs, stream: this.streamOf(runner, 'managed', intervalMs) })
  }

  /**
   * Applies everything a managed replica's feed has not applied yet (before a promotion): its
   * loop is paused, one sync runs to the source's current end, and the loop resumes.
   */
  async drainFeed(key: string): Promise<void> {
    const feed = this.feeds.get(key)
    if (!feed) return
    const stream = feed.stream
    feed.stream = undefined
    await stream?.stop()
    try {
      await feed.runner.sync()
    } finally {
      if (this.feeds.get(key) === feed) feed.stream = this.streamOf(feed.runner, 'managed', feed.intervalMs)
    }
  }

  async stopFeed(key: string): Promise<void> {
    const feed = this.feeds.get(key)
    this.feeds.delete(key)
    await feed?.stream?.stop()
    await feed?.runner.release()
  }

  /** A streaming loop by rule or feed name; null when it is not streaming. */
  streamState(name: string): StreamState | null {
    const stream =
      this.rules.get(name)?.streams?.forward ?? this.allStreams().find((candidate) => candidate.state.name === name)
    return stream ? { ...stream.state } : null
  }

  listStreams(): StreamState[] {
    return this.allStreams().map((stream) => ({ ...stream.state }))
  }

  /** Every running loop: rules (both directions), then managed feeds. */
  private allStreams(): StreamLoop[] {
    const streams: StreamLoop[] = []
    for (const record of this.rules.values()) {
      if (record.streams) streams.push(record.streams.forward)
      if (record.streams?.reverse) streams.push(record.streams.reverse)
    }
    for (const feed of this.feeds.values()) if (feed.stream) streams.push(feed.stream)
    return streams
  }

  /** Captures that rules hold on their source projects (for monitoring backlogs). */
  captures(): Array<{ capture: string; project: string }> {
    const captures: Array<{ capture: string; project: string }> = []
    for (const { config: rule } of this.rules.values()) {
      if (rule.mode === 'snapshot') continue
      captures.push({ capture: rule.name, project: rule.source })
      if (rule.mode === 'bidirectional') captures.push({ capture: `${rule.name}.r`, project: rule.target })
    }
    return captures
  }

  /** Counters of a rule (zeros before its first sync). */
  stats(name: string): SyncStats {
    const record = this.require(name)
    if (!record.forward) return syncStatsOf(emptySyncStats(record.config.name))
    const forward = record.forward.getStats()
    return record.reverse ? { ...forward, reverse: record.reverse.getStats() } : forward
  }

  /** What the rule's target has stored: the position applied last, when, and the dead letters kept. */
  async progress(name: string): Promise<RuleProgress> {
    const rule = this.require(name).config
    const target = this.host.master(rule.target).dialect
    const offset = await target.findOne(OFFSETS_COLLECTION, { rule: name }).catch(nullWhenMissing)
    const deadLetters = await target.count(DEAD_LETTERS_COLLECTION, { rule: name }).catch(nullWhenMissing)
    return {
      rule: name,
      position: offset?.position ? (JSON.parse(String(offset.position)) as RuleProgress['position']) : null,
      appliedAt: offset?.updated_at instanceof Date ? offset.updated_at : null,
      deadLetters: deadLetters ?? 0,
    }
  }

  /**
   * After a promotion in `project`: every rule reading or writing it gets runners on the new
   * master (streams restarted where they ran, counters kept), and the captures the old master
   * held for them are dropped when it can still be reached.
   */
  async followNewMaster(project: string, previous: Dialect | null): Promise<void> {
    for (const record of this.rules.values()) {
      const rule = record.config
      if (rule.source !== project && rule.target !== project) continue
      const streaming = record.streams !== undefined
      await this.stopStreams(record)
      const before = record.forward?.getStats()
      const reverseBefore = record.reverse?.getStats()
      record.forward = undefined
      record.reverse = undefined
      if (before) {
        record.forward = this.runnerFor(rule)
        record.forward.carryStatsFrom(before)
      }
      if (reverseBefore) {
        record.reverse = this.reverseRunnerFor(rule)!
        record.reverse.carryStatsFrom(reverseBefore)
      }
      if (previous && rule.mode !== 'snapshot') {
        const oldCapture = rule.source === project ? rule.name : rule.mode === 'bidirectional' ? `${rule.name}.r` : null
        if (oldCapture) await previous.capture?.drop(oldCapture).catch((error: unknown) => this.host.report(error))
      }
      if (streaming) {
        try {
          this.start(rule.name)
        } catch (error) {
          this.host.report(error)
        }
      }
    }
  }

  /** Stops every streaming loop and forgets the runners (the rules stay). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.rules.values()].map((record) => this.stopStreams(record)))
    await Promise.all([...this.feeds.values()].map((feed) => feed.stream?.stop()))
    const runners: RuleRunner[] = [...this.feeds.values()].map((feed) => feed.runner)
    for (const record of this.rules.values()) {
      if (record.forward) runners.push(record.forward)
      if (record.reverse) runners.push(record.reverse)
      record.forward = undefined
      record.reverse = undefined
    }
    await Promise.all(runners.map((runner) => runner.release()))
    this.feeds.clear()
  }

  private require(name: string): RuleRecord {
    const record = this.rules.get(name)
    if (!record)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `No replication rule "${name}". Rules: ${[...this.rules.keys()].join(', ') || '(none)'}.`,
        { details: { rule: name } },
      )
    return record
  }

  private runnerFor(config: ReplicationRuleConfig): RuleRunner {
    const direction = config.mode === 'bidirectional' ? bidirectionalConfigs(config)[0] : config
    return this.runnerBetween(direction)
  }

  /** The target → source runner of a bidirectional rule (undefined for other modes). */
  private reverseRunnerFor(config: ReplicationRuleConfig): RuleRunner | undefined {
    return config.mode === 'bidirectional' ? this.runnerBetween(bidirectionalConfigs(config)[1]) : undefined
  }

  private runnerBetween(config: RunnerConfig): RuleRunner {
    const source = this.host.master(config.source)
    const target = this.host.master(config.target)
    const origin = source.label
    return new RuleRunner({ ...config, origin }, source.dialect, target.dialect, this.host.observer, this.host.lease)
  }

  /** A loop that syncs `runner` every `intervalMs` (after `ready`, the rule's preparation). */
  private streamOf(
    runner: RuleRunner,
    kind: StreamState['kind'],
    intervalMs: number,
    ready?: () => Promise<void>,
  ): StreamLoop {
    const step = async () => {
      await ready?.()
      return runner.sync()
    }
    return new StreamLoop(runner.config.name, kind, step, intervalMs, (error) => this.host.report(error))
  }

  /** Stops a rule's loops (after their current batch). */
  private async stopStreams(record: RuleRecord): Promise<void> {
    const streams = record.streams
    record.streams = undefined
    await streams?.forward.stop()
    await streams?.reverse?.stop()
  }
}

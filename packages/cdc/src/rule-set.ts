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

/**
 * The replication rules of a manager: their configs, a runner per direction, the streaming
 * loops (rules and managed replica feeds) with their retry and backoff, and what follows a
 * promotion. Rules are registered at once; their runners are prepared on first use.
 */
export class RuleSet {
  private rules: ReplicationRuleConfig[] = []
  private readonly runners = new Map<string, RuleRunner>()
  /** Target → source runners of bidirectional rules. */
  private readonly reverseRunners = new Map<string, RuleRunner>()
  /** Preparations started by `add` and not finished yet. */
  private readonly preparing = new Map<string, Promise<void>>()
  private readonly streams = new Map<string, StreamLoop>()
  /** Managed replica feeds by key: their runner and streaming period. */
  private readonly feeds = new Map<string, { runner: RuleRunner; intervalMs: number }>()
  /** Streaming period each rule was started with (kept when a promotion restarts it). */
  private readonly intervals = new Map<string, number>()

  constructor(private readonly host: RuleSetHost) {}

  /**
   * Registers a rule now (a malformed rule, a taken name or an unknown project throw at once)
   * and prepares it: target tables, source capture. The returned promise settles with the
   * preparation; a rule whose preparation fails is removed again, and the failure is also
   * reported, so a caller that does not await it loses nothing silently.
   */
  add(config: ReplicationRuleConfig): Promise<void> {
    validateRule(config)
    if (this.rules.some((rule) => rule.name === config.name))
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `Rule "${config.name}" already exists; remove it first or pick another name.`,
        {
          details: { rule: config.name },
        },
      )
    this.host.master(config.source)
    this.host.master(config.target)
    this.rules.push({ ...config })
    this.host.changed()
    const ready = this.prepare(config).finally(() => this.preparing.delete(config.name))
    this.preparing.set(config.name, ready)
    ready.catch((error: unknown) => {
      this.rules = this.rules.filter((rule) => rule.name !== config.name)
      this.runners.delete(config.name)
      this.reverseRunners.delete(config.name)
      this.host.changed()
      this.host.report(error)
    })
    return ready
  }

  private async prepare(config: ReplicationRuleConfig): Promise<void> {
    const runner = this.runnerFor(config)
    await runner.prepare()
    this.runners.set(config.name, runner)
    const reverse = this.reverseRunnerFor(config)
    if (reverse) {
      await reverse.prepare()
      this.reverseRunners.set(config.name, reverse)
    }
  }

  /** Adds rules read from a tree file (prepared on first use); names already known are kept. */
  load(rules: ReplicationRuleConfig[]): void {
    const known = new Set(this.rules.map((rule) => rule.name))
    for (const rule of rules) if (!known.has(rule.name)) this.rules.push({ ...rule })
  }

  /** Removes a rule, its streams and what its capture holds on the source. */
  async remove(name: string): Promise<void> {
    const rule = this.require(name)
    await this.preparing.get(name)?.catch(() => undefined)
    await this.stopStream(`rule:${name}`)
    await this.stopStream(`rule:${name}.r`)
    await (this.runners.get(name) ?? this.runnerFor(rule)).teardown()
    await (this.reverseRunners.get(name) ?? this.reverseRunnerFor(rule))?.teardown()
    this.runners.delete(name)
    this.reverseRunners.delete(name)
    this.rules = this.rules.filter((candidate) => candidate.name !== name)
    this.host.changed()
  }

  /** The rules as written (for the tree file). */
  stored(): ReplicationRuleConfig[] {
    return this.rules.map((rule) => ({ ...rule }))
  }

  /** The rules with their defaults filled in. */
  list(): ResolvedRuleConfig[] {
    return this.rules.map((rule) => withRuleDefaults(rule))
  }

  /** Snapshot (first time), then every pending captured change; both directions of a bidirectional rule. */
  async sync(name: string): Promise<SyncStats> {
    const rule = this.require(name)
    await this.preparing.get(name)
    const forward = await (await this.preparedRunner(rule, 'forward')).sync()
    if (rule.mode !== 'bidirectional') return forward
    return { ...forward, reverse: await (await this.preparedRunner(rule, 'reverse')).sync() }
  }

  private async preparedRunner(rule: ReplicationRuleConfig, direction: 'forward' | 'reverse'): Promise<RuleRunner> {
    const runners = direction === 'forward' ? this.runners : this.reverseRunners
    let runner = runners.get(rule.name)
    if (!runner) {
      runner = direction === 'forward' ? this.runnerFor(rule) : this.reverseRunnerFor(rule)!
      await runner.prepare()
      runners.set(rule.name, runner)
    }
    return runner
  }

  /** Streams a rule continuously (both directions of a bidirectional rule). */
  start(name: string, options: { intervalMs?: number } = {}): void {
    const rule = this.require(name)
    if (this.streams.has(`rule:${name}`)) return
    const intervalMs = options.intervalMs ?? this.intervals.get(name) ?? this.host.defaultIntervalMs
    this.intervals.set(name, intervalMs)
    const ready = () => this.preparing.get(name) ?? Promise.resolve()
    const forward = this.runners.get(name) ?? this.runnerFor(rule)
    this.runners.set(name, forward)
    this.startStream(`rule:${name}`, forward, intervalMs, ready)
    if (rule.mode === 'bidirectional') {
      const reverse = this.reverseRunners.get(name) ?? this.reverseRunnerFor(rule)!
      this.reverseRunners.set(name, reverse)
      this.startStream(`rule:${name}.r`, reverse, intervalMs, ready)
    }
  }

  /** Stops a rule's continuous streaming (after its current batch). */
  async stop(name: string): Promise<void> {
    this.require(name)
    await this.stopStream(`rule:${name}`)
    await this.stopStream(`rule:${name}.r`)
    // another process may take the rule over at once rather than after the lease
    await this.runners.get(name)?.release()
    await this.reverseRunners.get(name)?.release()
  }

  /** Whether a rule streams continuously. */
  isStreaming(name: string): boolean {
    return this.streams.has(`rule:${name}`)
  }

  /** Feeds a managed replica from its master with the same engine (key: one per replica). */
  startFeed(key: string, config: RunnerConfig, source: Dialect, target: Dialect, intervalMs: number): void {
    if (this.streams.has(`managed:${key}`)) return
    const runner = new RuleRunner(config, source, target, this.host.observer, this.host.lease)
    this.feeds.set(key, { runner, intervalMs })
    this.startStream(`managed:${key}`, runner, intervalMs)
  }

  /**
   * Applies everything a managed replica's feed has not applied yet (before a promotion): its
   * loop is paused, one sync runs to the source's current end, and the loop resumes.
   */
  async drainFeed(key: string): Promise<void> {
    const feed = this.feeds.get(key)
    if (!feed) return
    await this.stopStream(`managed:${key}`)
    try {
      await feed.runner.sync()
    } finally {
      if (this.feeds.get(key) === feed) this.startStream(`managed:${key}`, feed.runner, feed.intervalMs)
    }
  }

  async stopFeed(key: string): Promise<void> {
    await this.stopStream(`managed:${key}`)
    await this.feeds.get(key)?.runner.release()
    this.feeds.delete(key)
  }

  /** A streaming loop by rule or feed name; null when it is not streaming. */
  streamState(name: string): StreamState | null {
    const stream =
      this.streams.get(`rule:${name}`) ?? [...this.streams.values()].find((candidate) => candidate.state.name === name)
    return stream ? { ...stream.state } : null
  }

  listStreams(): StreamState[] {
    return [...this.streams.values()].map((stream) => ({ ...stream.state }))
  }

  /** Captures that rules hold on their source projects (for monitoring backlogs). */
  captures(): Array<{ capture: string; project: string }> {
    const captures: Array<{ capture: string; project: string }> = []
    for (const rule of this.rules) {
      if (rule.mode === 'snapshot') continue
      captures.push({ capture: rule.name, project: rule.source })
      if (rule.mode === 'bidirectional') captures.push({ capture: `${rule.name}.r`, project: rule.target })
    }
    return captures
  }

  /** Counters of a rule (zeros before its first sync). */
  stats(name: string): SyncStats {
    const rule = this.require(name)
    const runner = this.runners.get(name)
    const reverse = this.reverseRunners.get(name)
    if (!runner) return syncStatsOf(emptySyncStats(rule.name))
    return reverse ? { ...runner.getStats(), reverse: reverse.getStats() } : runner.getStats()
  }

  /** What the rule's target has stored: the position applied last, when, and the dead letters kept. */
  async progress(name: string): Promise<RuleProgress> {
    const rule = this.require(name)
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
    for (const rule of this.rules) {
      if (rule.source !== project && rule.target !== project) continue
      const streaming = this.isStreaming(rule.name)
      await this.stopStream(`rule:${rule.name}`)
      await this.stopStream(`rule:${rule.name}.r`)
      const before = this.runners.get(rule.name)?.getStats()
      const reverseBefore = this.reverseRunners.get(rule.name)?.getStats()
      this.runners.delete(rule.name)
      this.reverseRunners.delete(rule.name)
      if (before) {
        const runner = this.runnerFor(rule)
        runner.carryStatsFrom(before)
        this.runners.set(rule.name, runner)
      }
      if (reverseBefore) {
        const reverse = this.reverseRunnerFor(rule)!
        reverse.carryStatsFrom(reverseBefore)
        this.reverseRunners.set(rule.name, reverse)
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
    await Promise.all([...this.streams.keys()].map((key) => this.stopStream(key)))
    const feeds = [...this.feeds.values()].map((feed) => feed.runner)
    const runners = [...this.runners.values(), ...this.reverseRunners.values(), ...feeds]
    await Promise.all(runners.map((runner) => runner.release()))
    this.feeds.clear()
    this.runners.clear()
    this.reverseRunners.clear()
  }

  private require(name: string): ReplicationRuleConfig {
    const rule = this.rules.find((candidate) => candidate.name === name)
    if (!rule)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `No replication rule "${name}". Rules: ${this.rules.map((r) => r.name).join(', ') || '(none)'}.`,
        { details: { rule: name } },
      )
    return rule
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

  private startStream(key: string, runner: RuleRunner, intervalMs: number, ready?: () => Promise<void>): void {
    const kind = key.startsWith('managed:') ? 'managed' : 'rule'
    const step = async () => {
      await ready?.()
      return runner.sync()
    }
    this.streams.set(
      key,
      new StreamLoop(runner.config.name, kind, step, intervalMs, (error) => this.host.report(error)),
    )
  }

  private async stopStream(key: string): Promise<void> {
    const stream = this.streams.get(key)
    this.streams.delete(key)
    await stream?.stop()
  }
}

import { EventEmitter } from 'node:events'
import type { CaptureBacklog, ChangeStream, EntitySchema, EntityService } from '@mostajs/replicator-core'
import {
  RuleSet,
  type OpenChangeStreamOptions,
  type ReplicationRuleConfig,
  type ResolvedRuleConfig,
  type RuleProgress,
  type StreamState,
  type SyncStats,
} from '@mostajs/replicator-cdc'
import type { ReadRoutingStrategy } from '@mostajs/replicator-routing'
import type { ReplicationManagerEvents } from './events.js'
import type { ManagerHost } from './manager-host.js'
import { logManagerEvents } from './manager-logger.js'
import { resolveOptions, type ReplicationManagerOptions } from './options.js'
import { Promotions } from './promotions.js'
import { ReadRouting } from './read-routing.js'
import { ReplicationRules } from './replication-rules.js'
import { Sessions } from './sessions.js'
import type { ReplicationSession } from './session.js'
import { Topology } from './topology.js'
import { TreePersistence } from './tree-persistence.js'
import type {
  PickedReplica,
  ProjectManagerLike,
  PromotionResult,
  ReplicaConfig,
  ReplicaStatus,
  ResolveReadOptions,
  RetentionWarning,
  RoutingStatus,
} from './types.js'

/**
 * Runs several databases as one: a master and slaves per project, reads routed to slaves
 * whose **measured** lag is within tolerance, read-your-writes sessions, promotion that
 * fences the old master, change data capture rules, and a tree file that reloads and
 * reconnects everything.
 *
 * It wires parts that each have one job and talk through narrow interfaces: the `Topology`
 * (projects, replicas, their monitors and managed feeds), `ReadRouting`, `Sessions`,
 * `Promotions` (on request, switchover, automatic, followed), `ReplicationRules` (CDC) and
 * `TreePersistence`. Every public member below is the original API, handed to its part.
 *
 * @example
 * const rm = new ReplicationManager()
 * await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: '${PRIMARY_URL}' })
 * await rm.addReplica('shop', { name: 'r1', role: 'slave', dialect: 'postgres', uri: '${REPLICA_URL}', lagTolerance: 500 })
 * rm.setReadRouting('shop', 'least-lag')
 * const users = await rm.resolveReadService('shop').findAll('users', { active: true })
 * const session = rm.session('shop')
 * await session.write().create('users', { id: 'u1', email: 'a@example.com' })
 * await session.read().findById('users', 'u1') // never stale
 */
export class ReplicationManager extends EventEmitter<ReplicationManagerEvents> {
  private readonly ruleSet: RuleSet
  private readonly topology: Topology
  private readonly routing: ReadRouting
  private readonly sessions: Sessions
  private readonly promotions: Promotions
  private readonly replicationRules: ReplicationRules
  private readonly persistence: TreePersistence

  constructor(projectManager?: ProjectManagerLike | null, given: ReplicationManagerOptions = {}) {
    super()
    const options = resolveOptions(given)
    if (given.logger) logManagerEvents(this, given.logger)
    const host: ManagerHost = {
      emit: (...event) => (this.emit as (...args: unknown[]) => boolean)(...event),
      report: (error) => {
        // background work never throws into the application; listeners of 'error' hear about problems
        if (this.listenerCount('error') > 0) this.emit('error', error)
      },
      changed: () => this.persistence.changed(),
    }
    this.ruleSet = new RuleSet({
      master: (project) => this.topology.master(project),
      report: host.report,
      changed: host.changed,
      observer: {
        batchApplied: (info) => this.emit('rule.batch', info),
        snapshotProgress: (info) => this.emit('rule.progress', info),
        captureLost: (info) => this.emit('rule.reseeded', info),
      },
      defaultIntervalMs: options.ruleIntervalMs,
      lease: { owner: options.heartbeatId, leaseMs: options.ruleLeaseMs },
    })
    this.topology = new Topology(host, options, projectManager, this.ruleSet, {
      masterFailed: (state) => this.promotions.masterFailed(state),
      rolesReported: (state) => this.promotions.rolesReported(state),
      monitorsStarted: () => this.replicationRules.startRetentionMonitor(),
    })
    this.sessions = new Sessions(this.topology, options.heartbeatId, (project, read) =>
      this.routing.resolveReadService(project, read),
    )
    this.routing = new ReadRouting(host, this.topology, this.sessions)
    this.promotions = new Promotions(host, options, this.topology, this.ruleSet)
    this.replicationRules = new ReplicationRules(host, options, this.topology, this.ruleSet)
    this.persistence = new TreePersistence(host, this.topology, this.ruleSet)
  }

  // ---------------------------------------------------------------- topology

  /**
   * Connects a replica and adds it to a project (created on first use). Validates the config
   * first: its shape, duplicate names, a second master, a native slave of another database
   * kind than its master (use `managed`), projects unknown to the ProjectManager.
   */
  addReplica(project: string, config: ReplicaConfig, schemas?: EntitySchema[]): Promise<ReplicaStatus> {
    return this.topology.addReplica(project, config, schemas)
  }

  /** Disconnects a replica and removes it from its project. */
  removeReplica(project: string, name: string): Promise<void> {
    return this.topology.removeReplica(project, name)
  }

  /** True when the project has at least one replica. */
  hasReplicas(project: string): boolean {
    return this.topology.hasReplicas(project)
  }

  /** Number of replicas over all projects. */
  get size(): number {
    return this.topology.size
  }

  /** Projects that have replicas. */
  listProjects(): string[] {
    return this.topology.listProjects()
  }

  /** Every replica of a project with its measured state (`status`, and the monitor's `state`: up/down/connecting). URIs are masked. */
  getReplicaStatus(project: string): ReplicaStatus[] {
    return this.topology.getReplicaStatus(project)
  }

  /** Current promotion epoch of a project. */
  getEpoch(project: string): number {
    return this.topology.getEpoch(project)
  }

  // ---------------------------------------------------------------- routing

  /** Sets how reads are spread over the project's eligible slaves. */
  setReadRouting(project: string, strategy: ReadRoutingStrategy): void {
    this.routing.setReadRouting(project, strategy)
  }

  getReadRouting(project: string): ReadRoutingStrategy {
    return this.routing.getReadRouting(project)
  }

  /**
   * The EntityService of the replica that should serve a read: a healthy slave whose measured
   * lag is within its tolerance (and, with a session, that applied the session's writes),
   * else the master. Decides from memory: no I/O. Its writes fail with READ_ONLY (a write on
   * a slave would diverge from the master) unless `allowWrites`.
   */
  resolveReadService(project: string, options?: ResolveReadOptions): EntityService {
    return this.routing.resolveReadService(project, options)
  }

  /**
   * The replica resolveReadService would pick, for a client of your own (an ORM, a driver pool
   * keyed by replica name): its name, role, dialect name and masked URI, and its read service
   * (`service.dialect.query(sql)` runs raw reads there). Counted as a routed read.
   */
  pickReplica(project: string, options?: Omit<ResolveReadOptions, 'allowWrites'>): PickedReplica {
    return this.routing.pickReplica(project, options)
  }

  /** How reads of a project are routed now: the strategy, the slaves eligible now, reads served so far. */
  getRoutingStatus(project: string): RoutingStatus {
    return this.routing.getRoutingStatus(project)
  }

  /** The EntityService of the project's master. Fails with FENCED once that master is demoted. */
  resolveWriteService(project: string): EntityService {
    return this.routing.resolveWriteService(project)
  }

  // ---------------------------------------------------------------- sessions

  /**
   * Runs `fn` (a request handler, a job) with a read-your-writes session of `project` that
   * resolveWriteService and resolveReadService use by themselves for everything `fn` does,
   * awaited calls included (AsyncLocalStorage): code that resolves services as usual reads its
   * own writes. A nested call for the same project keeps the session under way.
   *
   * `token`: the `session.token()` of an earlier request, from any instance (a cookie, a
   * header): this session also reads those writes.
   *
   * @example app.use((req, res, next) => rm.withSession('shop', next, { token: req.get('x-rw-token') }))
   */
  withSession<T>(project: string, fn: () => T, options?: { token?: string }): T {
    return this.sessions.withSession(project, fn, options)
  }

  /** The session `withSession` runs the current work under, for `project`; undefined outside one. */
  currentSession(project: string): ReplicationSession | undefined {
    return this.sessions.currentSession(project)
  }

  /**
   * A read-your-writes session: writes through `session.write()` record the master position
   * they reached; `session.read()` then only uses slaves that applied it (else the master).
   */
  session(project: string, token?: string): ReplicationSession {
    return this.sessions.session(project, token)
  }

  /** This manager's heartbeat writer: the sequence its sessions' positions are counted in. */
  get writerId(): string {
    return this.sessions.writerId
  }

  /** @internal The guarded master service of a session; records the position after each write. */
  sessionWriteService(session: ReplicationSession): EntityService {
    return this.sessions.sessionWriteService(session)
  }

  // ---------------------------------------------------------------- promotion

  /**
   * Promotes a slave to master (see `promote` of `@mostajs/replicator-failover`). Refuses with
   * LAG_TOO_HIGH when its measured lag exceeds its tolerance or is unknown, unless `force`.
   * The old master is fenced: made read-only when reachable, and services resolved from it
   * fail with FENCED. Other native slaves are re-pointed; managed slaves and rules follow.
   */
  promoteToMaster(project: string, name: string, options?: { force?: boolean }): Promise<PromotionResult> {
    return this.promotions.promoteToMaster(project, name, options)
  }

  /**
   * A planned change of master, with nothing lost: the current master must be reachable (it is
   * fenced, and the candidate must apply its final heartbeat, else LAG_TOO_HIGH and the old
   * master stays writable). Where the database allows it (MariaDB/MySQL with GTID), the old
   * master then replicates from the new one and serves reads again as a slave; a PostgreSQL
   * old master stays fenced (it needs pg_rewind or a new base backup to follow).
   */
  switchover(project: string, name: string): Promise<PromotionResult> {
    return this.promotions.switchover(project, name)
  }

  // ---------------------------------------------------------------- replication rules (CDC)

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
    return this.replicationRules.addReplicationRule(config)
  }

  /** Removes a rule and what its capture holds on the source (replication slot and publication, or triggers). */
  removeReplicationRule(name: string): Promise<void> {
    return this.replicationRules.removeReplicationRule(name)
  }

  /** The replication rules, with their defaults filled in (`enabled`, `conflictResolution`, `batchSize`, …). */
  listRules(): ResolvedRuleConfig[] {
    return this.replicationRules.listRules()
  }

  /** Snapshot (first time), then applies every pending captured change; resolves with the rule's stats. */
  sync(name: string): Promise<SyncStats> {
    return this.replicationRules.sync(name)
  }

  /**
   * Streams a rule continuously: applies pending changes every `intervalMs` (default the
   * manager's `ruleIntervalMs`, 200 ms). Errors are reported on 'error' and retried with
   * backoff; the offset only advances with applied batches.
   */
  startRule(name: string, options?: { intervalMs?: number }): Promise<void> {
    return this.replicationRules.startRule(name, options)
  }

  /** Stops a rule's continuous streaming (after its current batch). */
  stopRule(name: string): Promise<void> {
    return this.replicationRules.stopRule(name)
  }

  /** Counters of a rule (zeros before its first sync), ours and the original monitor's names. */
  getSyncStats(name: string): SyncStats {
    return this.replicationRules.getSyncStats(name)
  }

  /** What a rule's target has stored, so it survives restarts: position applied last, when, dead letters. */
  getRuleProgress(name: string): Promise<RuleProgress> {
    return this.replicationRules.getRuleProgress(name)
  }

  /** A streaming loop by rule name (or `managed.<project>.<replica>`); null when it is not streaming. */
  getStreamState(name: string): StreamState | null {
    return this.replicationRules.getStreamState(name)
  }

  /** Every streaming loop: rules (and their reverse direction) and managed replica feeds. */
  listStreams(): StreamState[] {
    return this.replicationRules.listStreams()
  }

  /**
   * The captured changes of a project's master as an async iterable (at least once: a batch
   * is confirmed when the loop has gone past it). See `openChangeStream`.
   */
  openChangeStream(project: string, options: OpenChangeStreamOptions): Promise<ChangeStream> {
    return this.replicationRules.openChangeStream(project, options)
  }

  /** What each capture holds on its source (WAL retained by a slot, unconfirmed changelog rows). */
  captureBacklogs(): Promise<Array<{ capture: string; source: string } & CaptureBacklog>> {
    return this.replicationRules.captureBacklogs()
  }

  /**
   * Checks what every capture holds on its source against `maxRetainedWalBytes` and the slot's
   * `wal_status`; emits `capture.retention` for each capture newly over, and returns all those
   * over now (also run every `retentionCheckIntervalMs`).
   */
  checkCaptureRetention(): Promise<RetentionWarning[]> {
    return this.replicationRules.checkCaptureRetention()
  }

  /** The captures over their retention limit at the last check (see `checkCaptureRetention`). */
  getRetentionWarnings(): RetentionWarning[] {
    return this.replicationRules.getRetentionWarnings()
  }

  // ---------------------------------------------------------------- persistence

  /**
   * Writes the topology (replicas with their URIs as given, routing, rules, epochs) atomically,
   * keyed by name as the original library did (its monitor reads it). Replacing a file of an
   * older form (a 0.2 file, version 1) keeps it as `<path>.v<form>.bak` and emits `tree.migrated`.
   */
  saveToFile(path: string): Promise<void> {
    return this.persistence.saveToFile(path)
  }

  /**
   * Loads a tree file and **reconnects** every replica (`${ENV}` references resolved). A
   * replica that cannot be reached is added as unhealthy and retried by the health checks.
   * Reads this release's files and the original `@mostajs/replicator` 0.2 ones (keyed, no
   * `version`; rule defaults filled in). A malformed file, or one holding a masked password
   * (`***`) → CONFIG_INVALID listing each problem's JSON path; nothing is changed.
   */
  loadFromFile(path: string): Promise<void> {
    return this.persistence.loadFromFile(path)
  }

  /**
   * Saves to `path` after every topology change (add, remove, routing, promotion, rules). A
   * file of an older form there is rewritten in the current one by the first save, which
   * keeps it as `<path>.v<form>.bak` and emits `tree.migrated` (logged as a warning).
   */
  enableAutoPersist(path: string): void {
    this.persistence.enableAutoPersist(path)
  }

  /** Stops automatic saving. */
  disableAutoPersist(): void {
    this.persistence.disableAutoPersist()
  }

  /** Resolves once every pending automatic save is on disk. */
  flush(): Promise<void> {
    return this.persistence.flush()
  }

  // ---------------------------------------------------------------- lifecycle

  /** Stops the monitors and streaming loops and closes every connection. */
  async disconnectAll(): Promise<void> {
    await this.ruleSet.stopAll()
    await this.topology.close()
    this.replicationRules.stopRetentionMonitor()
    await this.persistence.flush()
    await this.topology.disconnect()
  }
}

import { EventEmitter } from 'node:events'
import {
  createDialect,
  EntityService,
  HEARTBEAT_COLLECTION,
  ReplicatorError,
  type Dialect,
  type EntitySchema,
  type ProjectTopology,
} from '@mostajs/replicator-core'
import { resolveEnvReferences } from '@mostajs/replicator-persistence'
import { fenceIfStillPrimary } from './database-fence.js'
import { guardDialect } from './guarded-dialect.js'
import { logManagerEvents } from './manager-logger.js'
import { managedFeedName, RuleSet } from '@mostajs/replicator-cdc'
import { HealthMonitor, LagMonitor, ReadRouter, replicaStateOf } from '@mostajs/replicator-routing'
import type { ReplicationManagerEvents } from './events.js'
import { resolveOptions, type ReplicationManagerOptions, type ResolvedOptions } from './options.js'
import { SharedTopology } from './shared-topology.js'
import {
  isManagedSlave,
  replicaStatusOf,
  masterOf,
  requireMaster,
  validateReplica,
  type ProjectState,
  type ReplicaEntry,
} from './topology.js'
import type { ProjectManagerLike, ReplicaConfig, ReplicaStatus } from './types.js'

/**
 * What the public `ReplicationManager` stands on: the projects with their monitors (lag,
 * health, the replica state machine), the feeds of managed replicas, the rule set, and
 * problem reporting. Nothing here is public API.
 */
export class ManagerCore extends EventEmitter<ReplicationManagerEvents> {
  protected readonly projects = new Map<string, ProjectState>()
  protected readonly options: ResolvedOptions
  protected readonly rules: RuleSet
  /** The topology shared with other processes (null: this process alone). */
  protected readonly shared: SharedTopology | null

  constructor(
    protected readonly projectManager?: ProjectManagerLike | null,
    options: ReplicationManagerOptions = {},
  ) {
    super()
    this.options = resolveOptions(options)
    if (options.logger) logManagerEvents(this, options.logger)
    this.rules = new RuleSet({
      master: (project) => requireMaster(this.requireProject(project)),
      report: (error) => this.report(error),
      changed: () => this.schedulePersist(),
      observer: {
        batchApplied: (info) => this.emit('rule.batch', info),
        snapshotProgress: (info) => this.emit('rule.progress', info),
        captureLost: (info) => this.emit('rule.reseeded', info),
      },
      defaultIntervalMs: this.options.ruleIntervalMs,
      lease: { owner: this.options.heartbeatId, leaseMs: this.options.ruleLeaseMs },
    })
    this.shared = this.options.topologyStore
      ? new SharedTopology(
          this.options.topologyStore,
          { follow: (record) => this.followStoredTopology(record), report: (error) => this.report(error) },
          this.options.autoFailover
            ? { holder: this.options.heartbeatId, leaseMs: this.options.autoFailover.coordinatorLeaseMs }
            : null,
          this.options.maxViewAgeMs,
        )
      : null
  }

  /**
   * A promotion made by another process, heard from the shared store: this process follows it
   * (the database was promoted there). The old master is fenced here, so services resolved
   * from it fail with FENCED; managed feeds and rules move to the new master.
   */
  protected followStoredTopology(record: ProjectTopology): void {
    const state = this.projects.get(record.project)
    if (!state || record.epoch <= state.epoch) return
    const next = state.replicas.get(record.master)
    if (next) this.followMaster(state, next, record.epoch, false) // else followed once that replica is added here
  }

  /**
   * Follows a change of master made elsewhere: by another process (the database was promoted
   * there), or outside the manager (`outside`: the database reports it). The old master is
   * fenced here, so services resolved from it fail with FENCED; feeds and rules move.
   */
  protected followMaster(state: ProjectState, next: ReplicaEntry, epoch: number, outside: boolean): void {
    const previous = masterOf(state)
    state.epoch = epoch
    if (previous === next) return
    if (previous) this.demote(previous)
    this.crown(next)
    this.emit('topology.followed', {
      project: state.name,
      master: next.config.name,
      previousMaster: previous?.config.name ?? null,
      epoch,
      ...(outside ? { outside } : {}),
    })
    this.schedulePersist()
    const moved = async () => {
      // the promoting process freed the old master's captures; this one only stops its feeds
      for (const slave of this.managedSlaves(state)) await this.rules.stopFeed(slave.label)
      await this.followedByFeedsAndRules(state, null)
    }
    moved().catch((error: unknown) => this.report(error))
  }

  /** The stale-view check of calls through `project`'s writable services (none without a shared store). */
  protected staleView(project: string): (() => Promise<void> | null) | undefined {
    const shared = this.shared
    return shared ? () => shared.whenStale(project) : undefined
  }

  /** The old master leaves routing: fenced (services resolved from it fail with FENCED), a slave in the tree. */
  protected demote(previous: ReplicaEntry): void {
    previous.fenced = true
    previous.config.role = 'slave'
    this.updateState(previous)
  }

  /** The new master, in memory (the database was promoted, here or by another process). */
  protected crown(next: ReplicaEntry): void {
    next.config.role = 'master'
    next.fenced = false
    next.lagMs = 0
    this.updateState(next)
  }

  /** After a change of master: managed slaves are fed from the new one, and rules follow it. */
  protected async followedByFeedsAndRules(state: ProjectState, previous: Dialect | null): Promise<void> {
    for (const slave of this.managedSlaves(state)) if (!slave.fenced) this.startFeed(state, slave)
    await this.rules.followNewMaster(state.name, previous)
  }

  /** Saves the tree when auto-persist is on (the manager overrides it). */
  protected schedulePersist(): void {}

  protected report(error: unknown): void {
    // Background work never throws into the application; listeners of 'error' hear about problems.
    if (this.listenerCount('error') > 0) this.emit('error', error)
  }

  protected requireProject(project: string): ProjectState {
    const state = this.projects.get(project)
    if (!state) {
      const known = this.listProjects().join(', ') || '(none)'
      throw new ReplicatorError(
        'REPLICA_NOT_FOUND',
        `Project "${project}" has no replicas. Known projects: ${known}.`,
        {
          details: { project },
        },
      )
    }
    return state
  }

  /** Projects that have replicas. */
  listProjects(): string[] {
    return [...this.projects.keys()]
  }

  protected validateProjectName(project: string): void {
    if (typeof project !== 'string' || project.trim() === '')
      throw new ReplicatorError('CONFIG_INVALID', 'A project name must be a non-empty string.')
    if (this.projectManager && !this.projectManager.hasProject(project)) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `Project "${project}" is not known to the ProjectManager; create it there first.`,
        { details: { project } },
      )
    }
  }

  /** The project's state, created (with its monitors, not started) on first use. */
  protected projectState(project: string): ProjectState {
    let state = this.projects.get(project)
    if (state) return state
    const lag = new LagMonitor({
      heartbeatId: this.options.heartbeatId,
      intervalMs: this.options.heartbeatIntervalMs,
      view: () => ({
        master: masterOf(state!),
        slaves: [...state!.replicas.values()].filter(
          (entry) => entry.config.role === 'slave' && !entry.fenced && entry.connected && entry.dialect.heartbeat,
        ),
      }),
      measured: (replica) => this.updateState(replica as ReplicaEntry),
      paused: () => state!.promoting,
      report: (error) => this.report(error),
    })
    state = {
      name: project,
      replicas: new Map(),
      router: new ReadRouter('round-robin'),
      schemas: [],
      lag,
      health: undefined,
      epoch: 0,
      promoting: false,
      candidates: null,
      masterFallbacks: new Map(),
    }
    this.projects.set(project, state)
    return state
  }

  protected startMonitors(state: ProjectState): void {
    state.health ??= new HealthMonitor({
      intervalMs: this.options.healthCheckIntervalMs,
      failureThreshold: this.options.failureThreshold,
      replicas: () => [...state.replicas.values()],
      reconnected: async (replica) => {
        const entry = replica as ReplicaEntry
        await this.applySchemas(entry, state.schemas)
        this.startFeedsOf(state, entry)
      },
      // the master's too: a role changed outside the manager is seen (rolesReported)
      wantsNativeStatus: (replica) => !isManagedSlave(replica as ReplicaEntry) && !(replica as ReplicaEntry).fenced,
      checked: (replica) => {
        this.updateState(replica as ReplicaEntry)
        fenceIfStillPrimary(replica as ReplicaEntry, {
          fenced: (info) => this.emit('replica.fenced', info),
          report: (error) => this.report(error),
        })
        this.rolesReported(state)
      },
    })
    state.health.start()
    state.lag.start()
  }

  protected stopMonitors(state: ProjectState): void {
    state.lag.stop()
    state.health?.stop()
  }

  /** Moves a replica's state (and tells listeners) from what the monitors last measured. */
  protected updateState(entry: ReplicaEntry): void {
    const project = this.projects.get(entry.project)
    if (project) project.candidates = null
    const next = replicaStateOf({
      fenced: entry.fenced,
      isMaster: entry.config.role === 'master',
      connected: entry.connected,
      healthy: entry.healthy,
      failures: entry.failures,
      lagMs: entry.lagMs,
      lagToleranceMs: entry.config.lagTolerance,
    })
    // at every check while the master stays down, not only when it went down: the process
    // coordinating failover may change meanwhile (the old one died with the master)
    if (project && next === 'unhealthy' && entry.config.role === 'master' && !entry.fenced) this.masterFailed(project)
    if (project && next === 'healthy' && entry.config.role === 'master') project.failoverRefused = false
    if (next === entry.state) return
    const previous = entry.state
    entry.state = next
    this.emit('replica.state', {
      project: entry.project,
      name: entry.config.name,
      state: next,
      previous,
      lag: entry.lagMs,
    })
  }

  /** After each health check: roles the databases report that the manager did not make. */
  protected rolesReported(_state: ProjectState): void {}

  /** A project's master is unreachable (for failureThreshold checks or more): automatic failover may act. */
  protected masterFailed(_state: ProjectState): void {}

  /** Creates (`create`/`update`) or checks (`validate`) the project's tables on a replica. */
  protected async applySchemas(entry: ReplicaEntry, schemas: EntitySchema[]): Promise<void> {
    const strategy = entry.config.schemaStrategy ?? 'none'
    if (strategy === 'none' || !schemas.length) return
    const writable = entry.config.role === 'master' || entry.config.replication === 'managed'
    for (const schema of schemas) {
      if ((strategy === 'create' || strategy === 'update') && writable) await entry.dialect.ensureCollection(schema)
      else await entry.dialect.describeCollection(schema.collection) // validate: the table must exist
    }
  }

  protected managedSlaves(state: ProjectState): ReplicaEntry[] {
    return [...state.replicas.values()].filter(isManagedSlave)
  }

  /** Starts the feeds a replica takes part in: its own (managed slave), or its slaves' (master). */
  protected startFeedsOf(state: ProjectState, entry: ReplicaEntry): void {
    if (isManagedSlave(entry)) this.startFeed(state, entry)
    if (entry.config.role === 'master') for (const slave of this.managedSlaves(state)) this.startFeed(state, slave)
  }

  /** Feeds a managed slave from its project's master (all collections, and the heartbeat for lag). */
  protected startFeed(state: ProjectState, slave: ReplicaEntry): void {
    const master = masterOf(state)
    if (!master?.connected || !slave.connected || slave.fenced) return
    const config = {
      name: managedFeedName(state.name, slave.config.name),
      source: master.label,
      target: slave.label,
      mode: 'cdc' as const,
      collections: ['*'],
      alsoCarry: [HEARTBEAT_COLLECTION],
      origin: master.label,
    }
    const intervalMs = Math.min(this.options.heartbeatIntervalMs, 200)
    this.rules.startFeed(slave.label, config, master.dialect, slave.dialect, intervalMs)
  }

  protected async stopFeed(state: ProjectState, slave: ReplicaEntry, dropCapture: boolean): Promise<void> {
    await this.rules.stopFeed(slave.label)
    const master = masterOf(state)
    const capture = master?.dialect.capture
    if (!dropCapture || !capture) return
    await capture.drop(managedFeedName(state.name, slave.config.name)).catch((error: unknown) => this.report(error))
  }

  /** Validates, connects and adds a replica; a replica that cannot be reached is kept when `tolerateDown`. */
  protected async connectReplica(
    project: string,
    config: ReplicaConfig,
    how: { schemas?: EntitySchema[]; tolerateDown: boolean; fenced: boolean },
  ): Promise<ReplicaStatus> {
    this.validateProjectName(project)
    const { fenced } = how
    const normalized = validateReplica(project, config, this.projects.get(project), {
      fenced,
      defaultLagTolerance: this.options.defaultLagTolerance,
    })
    const state = this.projectState(project)
    if (how.schemas?.length) state.schemas = how.schemas
    else if (!state.schemas.length) state.schemas = this.projectManager?.getProject(project)?.schemas ?? []
    const uri = resolveEnvReferences(normalized.uri, `${project}/${normalized.name}.uri`)
    const dialect = createDialect({
      dialect: normalized.dialect,
      uri,
      pool: normalized.pool,
      connectTimeoutMs: this.options.connectTimeoutMs,
      capture: this.options.capture,
    })
    const entry: ReplicaEntry = {
      project,
      config: normalized,
      dialect,
      connected: false,
      healthy: true,
      failures: 0,
      fenced,
      lagMs: normalized.role === 'master' ? 0 : null,
      appliedSequence: null,
      lastHeartbeatAt: null,
      state: 'connecting',
      label: `${project}/${normalized.name}`,
      readsRouted: 0,
      service: undefined as unknown as EntityService, // set below: its guard needs the entry
      readService: undefined as unknown as EntityService,
    }
    const staleView = this.staleView(project)
    entry.service = new EntityService(guardDialect(dialect, entry, { staleView }), state.schemas)
    // reads do not wait for the store: a stale view may read old data, never write where it should not
    entry.readService = new EntityService(guardDialect(dialect, entry, { readOnly: true }), state.schemas)
    try {
      await dialect.connect()
      entry.connected = true
    } catch (error) {
      if (!how.tolerateDown) {
        if (state.replicas.size === 0) this.projects.delete(project)
        throw error
      }
      entry.healthy = false
      entry.failures = 1
      entry.lastError = (error as Error).message
    }
    if (entry.connected && !fenced) await this.applySchemas(entry, state.schemas)
    state.replicas.set(normalized.name, entry)
    this.updateState(entry)
    this.startMonitors(state)
    if (!fenced) this.startFeedsOf(state, entry)
    if (this.shared && normalized.role === 'master' && !fenced)
      await this.shared.join(project, { master: normalized.name, epoch: state.epoch })
    else this.shared?.refollow(project)
    this.emit('replica.added', { project, name: normalized.name, role: normalized.role })
    this.schedulePersist()
    return replicaStatusOf(entry)
  }
}

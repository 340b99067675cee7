import {
  createDialect,
  EntityService,
  ReplicatorError,
  type EntitySchema,
  type ProjectTopology,
} from '@mostajs/replicator-core'
import { resolveEnvReferences } from '@mostajs/replicator-persistence'
import type { RuleSet } from '@mostajs/replicator-cdc'
import { HealthMonitor, LagMonitor, ReadRouter, replicaStateOf } from '@mostajs/replicator-routing'
import { fenceIfStillPrimary } from './database-fence.js'
import { guardDialect } from './guarded-dialect.js'
import type { ManagerHost } from './manager-host.js'
import type { ResolvedOptions } from './options.js'
import {
  isManagedSlave,
  masterOf,
  replicaStatusOf,
  requireMaster,
  requireReplica,
  validateReplica,
  type ProjectState,
  type ReplicaEntry,
} from './project-state.js'
import { ManagedFeeds } from './managed-feeds.js'
import { SharedTopology } from './shared-topology.js'
import type { ProjectManagerLike, ReplicaConfig, ReplicaStatus } from './types.js'

/** What the topology asks of the other parts when the databases' state changes. */
export interface TopologyReactions {
  /** A project's master is unreachable (for failureThreshold checks or more): automatic failover may act. */
  masterFailed(state: ProjectState): void
  /** After each health check: roles the databases report that the manager did not make. */
  rolesReported(state: ProjectState): void
  /** A project's monitors started (the first replica of a project was added). */
  monitorsStarted(): void
}

/**
 * The projects: their replicas (config, connection, services, measured state), the monitors
 * that measure them (lag, health, the replica state machine), the feeds of managed replicas,
 * and the link to a topology store shared with other processes. Other parts reach replicas
 * through it.
 */
export class Topology {
  readonly projects = new Map<string, ProjectState>()
  /** The topology shared with other processes (null: this process alone). */
  readonly shared: SharedTopology | null
  /** The feeds of managed replicas (the replicator streams the master into them). */
  readonly feeds: ManagedFeeds

  constructor(
    private readonly host: ManagerHost,
    private readonly options: ResolvedOptions,
    private readonly projectManager: ProjectManagerLike | null | undefined,
    private readonly ruleSet: RuleSet,
    private readonly reactions: TopologyReactions,
  ) {
    this.feeds = new ManagedFeeds(host, ruleSet, Math.min(options.heartbeatIntervalMs, 200))
    this.shared = options.topologyStore
      ? new SharedTopology(
          options.topologyStore,
          { follow: (record) => this.followStoredTopology(record), report: (error) => host.report(error) },
          options.autoFailover
            ? { holder: options.heartbeatId, leaseMs: options.autoFailover.coordinatorLeaseMs }
            : null,
          options.maxViewAgeMs,
        )
      : null
  }

  /** Connects a replica and adds it to a project (see `ReplicationManager.addReplica`). */
  async addReplica(project: string, config: ReplicaConfig, schemas?: EntitySchema[]): Promise<ReplicaStatus> {
    return this.connectReplica(project, config, { schemas, tolerateDown: false, fenced: false })
  }

  /** Disconnects a replica and removes it from its project. */
  async removeReplica(project: string, name: string): Promise<void> {
    const state = this.requireProject(project)
    const entry = requireReplica(state, name)
    if (isManagedSlave(entry)) await this.feeds.stop(state, entry, true)
    if (entry.config.role === 'master')
      for (const slave of this.feeds.managedSlaves(state)) await this.feeds.stop(state, slave, false)
    state.replicas.delete(name)
    state.candidates = null
    await entry.dialect.close().catch(() => undefined)
    if (state.replicas.size === 0) {
      this.stopMonitors(state)
      this.projects.delete(project)
    }
    this.host.emit('replica.removed', { project, name })
    this.host.changed()
  }

  /** True when the project has at least one replica. */
  hasReplicas(project: string): boolean {
    return (this.projects.get(project)?.replicas.size ?? 0) > 0
  }

  /** Number of replicas over all projects. */
  get size(): number {
    let count = 0
    for (const state of this.projects.values()) count += state.replicas.size
    return count
  }

  /** Every replica of a project with its measured state. URIs are masked. */
  getReplicaStatus(project: string): ReplicaStatus[] {
    return [...this.requireProject(project).replicas.values()].map(replicaStatusOf)
  }

  /** Current promotion epoch of a project. */
  getEpoch(project: string): number {
    return this.requireProject(project).epoch
  }

  /** Stops every monitor and the shared store's watch (the connections stay open: see `disconnect`). */
  async close(): Promise<void> {
    for (const state of this.projects.values()) this.stopMonitors(state)
    await this.shared?.close()
  }

  /** Closes every replica's connection and forgets the projects (after `close`). */
  async disconnect(): Promise<void> {
    const closing: Promise<void>[] = []
    for (const state of this.projects.values())
      for (const entry of state.replicas.values()) closing.push(entry.dialect.close().catch(() => undefined))
    await Promise.all(closing)
    this.projects.clear()
  }

  /** The project's master, or REPLICA_NOT_FOUND. */
  master(project: string): ReplicaEntry {
    return requireMaster(this.requireProject(project))
  }

  /**
   * A promotion made by another process, heard from the shared store: this process follows it
   * (the database was promoted there). The old master is fenced here, so services resolved
   * from it fail with FENCED; managed feeds and rules move to the new master.
   */
  followStoredTopology(record: ProjectTopology): void {
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
  followMaster(state: ProjectState, next: ReplicaEntry, epoch: number, outside: boolean): void {
    const previous = masterOf(state)
    state.epoch = epoch
    if (previous === next) return
    if (previous) this.demote(previous)
    this.crown(next)
    this.host.emit('topology.followed', {
      project: state.name,
      master: next.config.name,
      previousMaster: previous?.config.name ?? null,
      epoch,
      ...(outside ? { outside } : {}),
    })
    this.host.changed()
    const moved = async () => {
      // the promoting process freed the old master's captures; this one only stops its feeds
      for (const slave of this.feeds.managedSlaves(state)) await this.ruleSet.stopFeed(slave.label)
      await this.feeds.followNewMaster(state, null)
    }
    moved().catch((error: unknown) => this.host.report(error))
  }

  /** The stale-view check of calls through `project`'s writable services (none without a shared store). */
  staleView(project: string): (() => Promise<void> | null) | undefined {
    const shared = this.shared
    return shared ? () => shared.whenStale(project) : undefined
  }

  /** The old master leaves routing: fenced (services resolved from it fail with FENCED), a slave in the tree. */
  demote(previous: ReplicaEntry): void {
    previous.fenced = true
    previous.config.role = 'slave'
    this.updateState(previous)
  }

  /** The new master, in memory (the database was promoted, here or by another process). */
  crown(next: ReplicaEntry): void {
    next.config.role = 'master'
    next.fenced = false
    next.lagMs = 0
    this.updateState(next)
  }

  requireProject(project: string): ProjectState {
    const state = this.projects.get(project)
    if (!state) {
      const known = this.listProjects().join(', ') || '(none)'
      const message = `Project "${project}" has no replicas. Known projects: ${known}.`
      throw new ReplicatorError('REPLICA_NOT_FOUND', message, { details: { project } })
    }
    return state
  }

  /** Projects that have replicas. */
  listProjects(): string[] {
    return [...this.projects.keys()]
  }

  validateProjectName(project: string): void {
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
  projectState(project: string): ProjectState {
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
      report: (error) => this.host.report(error),
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

  startMonitors(state: ProjectState): void {
    state.health ??= new HealthMonitor({
      intervalMs: this.options.healthCheckIntervalMs,
      failureThreshold: this.options.failureThreshold,
      replicas: () => [...state.replicas.values()],
      reconnected: async (replica) => {
        const entry = replica as ReplicaEntry
        await this.applySchemas(entry, state.schemas)
        this.feeds.startFor(state, entry)
      },
      // the master's too: a role changed outside the manager is seen (rolesReported)
      wantsNativeStatus: (replica) => !isManagedSlave(replica as ReplicaEntry) && !(replica as ReplicaEntry).fenced,
      checked: (replica) => {
        this.updateState(replica as ReplicaEntry)
        fenceIfStillPrimary(replica as ReplicaEntry, {
          fenced: (info) => this.host.emit('replica.fenced', info),
          report: (error) => this.host.report(error),
        })
        this.reactions.rolesReported(state)
      },
    })
    state.health.start()
    state.lag.start()
    this.reactions.monitorsStarted()
  }

  stopMonitors(state: ProjectState): void {
    state.lag.stop()
    state.health?.stop()
  }

  /** Moves a replica's state (and tells listeners) from what the monitors last measured. */
  updateState(entry: ReplicaEntry): void {
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
    if (project && next === 'unhealthy' && entry.config.role === 'master' && !entry.fenced)
      this.reactions.masterFailed(project)
    if (project && next === 'healthy' && entry.config.role === 'master') project.failoverRefused = false
    if (next === entry.state) return
    const previous = entry.state
    entry.state = next
    this.host.emit('replica.state', {
      project: entry.project,
      name: entry.config.name,
      state: next,
      previous,
      lag: entry.lagMs,
    })
  }

  /** Creates (`create`/`update`) or checks (`validate`) the project's tables on a replica. */
  async applySchemas(entry: ReplicaEntry, schemas: EntitySchema[]): Promise<void> {
    const strategy = entry.config.schemaStrategy ?? 'none'
    if (strategy === 'none' || !schemas.length) return
    const writable = entry.config.role === 'master' || entry.config.replication === 'managed'
    for (const schema of schemas) {
      if ((strategy === 'create' || strategy === 'update') && writable) await entry.dialect.ensureCollection(schema)
      else await entry.dialect.describeCollection(schema.collection) // validate: the table must exist
    }
  }

  /** Validates, connects and adds a replica; a replica that cannot be reached is kept when `tolerateDown`. */
  async connectReplica(
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
    if (!fenced) this.feeds.startFor(state, entry)
    if (this.shared && normalized.role === 'master' && !fenced)
      await this.shared.join(project, { master: normalized.name, epoch: state.epoch })
    else this.shared?.refollow(project)
    this.host.emit('replica.added', { project, name: normalized.name, role: normalized.role })
    this.host.changed()
    return replicaStatusOf(entry)
  }
}

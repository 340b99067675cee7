import { AsyncLocalStorage } from 'node:async_hooks'
import {
  dialectDescriptor,
  EntityService,
  jsonPath,
  ReplicatorError,
  type EntitySchema,
} from '@mostajs/replicator-core'
import { loadTreeFile, resolveEnvReferences, writeTreeFile } from '@mostajs/replicator-persistence'
import {
  assertStrategy,
  fallbackReason,
  isEligible,
  type FallbackReason,
  type ReadRoutingStrategy,
  type RouteOptions,
} from '@mostajs/replicator-routing'
import { ManagerWithFailover } from './manager-failover.js'
import { guardDialect } from './guarded-dialect.js'
import { ReplicationSession } from './session.js'
import {
  isManagedSlave,
  masterOf,
  replicaStatusOf,
  requireMaster,
  requireReplica,
  routingCandidateOf,
  type ProjectState,
  type ReplicaEntry,
} from './topology.js'
import { mastersFirst, treeOf } from './tree.js'
import type {
  PickedReplica,
  PromotionResult,
  ReplicaConfig,
  ReplicaStatus,
  ResolveReadOptions,
  RoutingStatus,
} from './types.js'

/**
 * Runs several databases as one: a master and slaves per project, reads routed to slaves
 * whose **measured** lag is within tolerance, read-your-writes sessions, promotion that
 * fences the old master, change data capture rules, and a tree file that reloads and
 * reconnects everything. It wires the parts: `routing` measures and routes, `failover`
 * promotes, `cdc` runs the rules and managed feeds, `persistence` stores the tree.
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
export class ReplicationManager extends ManagerWithFailover {
  private autoPersistPath: string | undefined
  private persistQueue: Promise<void> = Promise.resolve()
  /** The sessions of the work under way (withSession), per project. */
  private readonly ambient = new AsyncLocalStorage<ReadonlyMap<string, ReplicationSession>>()

  // ---------------------------------------------------------------- topology

  /**
   * Connects a replica and adds it to a project (created on first use). Validates the config
   * first: its shape, duplicate names, a second master, a native slave of another database
   * kind than its master (use `managed`), projects unknown to the ProjectManager.
   */
  async addReplica(project: string, config: ReplicaConfig, schemas?: EntitySchema[]): Promise<ReplicaStatus> {
    return this.connectReplica(project, config, { schemas, tolerateDown: false, fenced: false })
  }

  /** Disconnects a replica and removes it from its project. */
  async removeReplica(project: string, name: string): Promise<void> {
    const state = this.requireProject(project)
    const entry = requireReplica(state, name)
    if (isManagedSlave(entry)) await this.stopFeed(state, entry, true)
    if (entry.config.role === 'master')
      for (const slave of this.managedSlaves(state)) await this.stopFeed(state, slave, false)
    state.replicas.delete(name)
    state.candidates = null
    await entry.dialect.close().catch(() => undefined)
    if (state.replicas.size === 0) {
      this.stopMonitors(state)
      this.projects.delete(project)
    }
    this.emit('replica.removed', { project, name })
    this.schedulePersist()
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

  // ---------------------------------------------------------------- routing

  /** Sets how reads are spread over the project's eligible slaves. */
  setReadRouting(project: string, strategy: ReadRoutingStrategy): void {
    assertStrategy(strategy)
    this.requireProject(project).router.strategy = strategy
    this.schedulePersist()
  }

  getReadRouting(project: string): ReadRoutingStrategy {
    return this.requireProject(project).router.strategy
  }

  /**
   * The EntityService of the replica that should serve a read: a healthy slave whose measured
   * lag is within its tolerance (and, with a session, that applied the session's writes),
   * else the master. Decides from memory: no I/O. Its writes fail with READ_ONLY (a write on
   * a slave would diverge from the master) unless `allowWrites`.
   */
  resolveReadService(project: string, options: ResolveReadOptions = {}): EntityService {
    const chosen = this.chooseReader(project, options)
    return options.allowWrites ? chosen.service : chosen.readService
  }

  /**
   * The replica resolveReadService would pick, for a client of your own (an ORM, a driver pool
   * keyed by replica name): its name, role, dialect name and masked URI, and its read service
   * (`service.dialect.query(sql)` runs raw reads there). Counted as a routed read.
   */
  pickReplica(project: string, options: Omit<ResolveReadOptions, 'allowWrites'> = {}): PickedReplica {
    const chosen = this.chooseReader(project, options)
    return {
      project,
      name: chosen.config.name,
      role: chosen.config.role,
      dialect: chosen.config.dialect,
      uri: chosen.dialect.maskedUri,
      service: chosen.readService,
    }
  }

  private chooseReader(project: string, given: ResolveReadOptions): ReplicaEntry {
    const state = this.requireProject(project)
    if (given.consistency === 'strong') return this.fallBack(state, 'strong_consistency')
    const session = given.session ?? this.currentSession(project)
    const options = session ? { ...given, session } : given
    if (options.session && options.session.project !== project)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `This session belongs to project "${options.session.project}", not "${project}".`,
      )
    // the master, fenced and unconnected replicas come marked `excluded`
    state.candidates ??= [...state.replicas.values()].map(routingCandidateOf)
    const route = routeOf(options.session)
    const picked = state.router.pick(state.candidates, route)
    const chosen = picked ? state.replicas.get(picked)! : this.fallBack(state, fallbackReason(state.candidates, route))
    chosen.readsRouted++
    return chosen
  }

  /** The master, for a read no slave could serve; counted by reason. */
  private fallBack(state: ProjectState, reason: FallbackReason): ReplicaEntry {
    const master = requireMaster(state)
    state.masterFallbacks.set(reason, (state.masterFallbacks.get(reason) ?? 0) + 1)
    return master
  }

  /** How reads of a project are routed now: the strategy, the slaves eligible now, reads served so far. */
  getRoutingStatus(project: string): RoutingStatus {
    const state = this.requireProject(project)
    const replicas = [...state.replicas.values()]
    return {
      project,
      strategy: state.router.strategy,
      master: masterOf(state)?.config.name ?? null,
      eligible: replicas.filter((entry) => isEligible(routingCandidateOf(entry))).map((entry) => entry.config.name),
      readsRouted: Object.fromEntries(replicas.map((entry) => [entry.config.name, entry.readsRouted])),
      masterFallbacks: Object.fromEntries(state.masterFallbacks),
    }
  }

  /** The EntityService of the project's master. Fails with FENCED once that master is demoted. */
  resolveWriteService(project: string): EntityService {
    const session = this.currentSession(project)
    return session ? session.write() : requireMaster(this.requireProject(project)).service
  }

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
  withSession<T>(project: string, fn: () => T, options: { token?: string } = {}): T {
    const current = this.currentSession(project)
    if (current) {
      if (options.token) current.absorb(options.token)
      return fn()
    }
    const sessions = new Map(this.ambient.getStore() ?? [])
    sessions.set(project, this.session(project, options.token))
    return this.ambient.run(sessions, fn)
  }

  /** The session `withSession` runs the current work under, for `project`; undefined outside one. */
  currentSession(project: string): ReplicationSession | undefined {
    return this.ambient.getStore()?.get(project)
  }

  /**
   * A read-your-writes session: writes through `session.write()` record the master position
   * they reached; `session.read()` then only uses slaves that applied it (else the master).
   */
  session(project: string, token?: string): ReplicationSession {
    this.requireProject(project)
    return new ReplicationSession(this, project, token || undefined)
  }

  /** This manager's heartbeat writer: the sequence its sessions' positions are counted in. */
  get writerId(): string {
    return this.options.heartbeatId
  }

  /** @internal The guarded master service of a session; records the position after each write. */
  sessionWriteService(session: ReplicationSession): EntityService {
    const state = this.requireProject(session.project)
    const master = requireMaster(state)
    // A heartbeat issued after this write completed commits after it: a slave that applied
    // that heartbeat has the write.
    const recordPosition = () => session.recordPosition(state.lag.issued + 1n)
    return new EntityService(
      guardDialect(master.dialect, master, { onWrite: recordPosition, staleView: this.staleView(session.project) }),
      state.schemas,
    )
  }

  // ---------------------------------------------------------------- status

  /** Every replica of a project with its measured state. URIs are masked. */
  getReplicaStatus(project: string): ReplicaStatus[] {
    return [...this.requireProject(project).replicas.values()].map(replicaStatusOf)
  }

  /** Current promotion epoch of a project. */
  getEpoch(project: string): number {
    return this.requireProject(project).epoch
  }

  // ---------------------------------------------------------------- promotion

  /**
   * A planned change of master, with nothing lost: the current master must be reachable (it is
   * fenced, and the candidate must apply its final heartbeat, else LAG_TOO_HIGH and the old
   * master stays writable). Where the database allows it (MariaDB/MySQL with GTID), the old
   * master then replicates from the new one and serves reads again as a slave; a PostgreSQL
   * old master stays fenced (it needs pg_rewind or a new base backup to follow).
   */
  async switchover(project: string, name: string): Promise<PromotionResult> {
    const state = this.requireProject(project)
    const previous = masterOf(state)
    if (!previous?.connected || !previous.healthy)
      throw new ReplicatorError(
        'CONNECTION_FAILED',
        `Project "${project}": a switchover needs its master reachable (a planned change); use promoteToMaster for a failover.`,
        { details: { project } },
      )
    const result = await this.promoteToMaster(project, name)
    if (dialectDescriptor(previous.config.dialect)?.oldMasterRejoins && previous.dialect.replication) {
      const candidate = requireReplica(state, name)
      await previous.dialect.replication.replicateFrom(
        resolveEnvReferences(candidate.config.uri, `${project}/${name}.uri`),
      )
      // a new entry: services resolved from the old one stay fenced
      const config = { ...previous.config, role: 'slave' as const, replication: 'native' as const }
      await this.removeReplica(project, previous.config.name)
      await this.addReplica(project, config)
    }
    return result
  }

  // ---------------------------------------------------------------- persistence

  /**
   * Writes the topology (replicas with their URIs as given, routing, rules, epochs) atomically,
   * keyed by name as the original library did (its monitor reads it). Replacing a file of an
   * older form (a 0.2 file, version 1) keeps it as `<path>.v<form>.bak` and emits `tree.migrated`.
   */
  async saveToFile(path: string): Promise<void> {
    const written = await writeTreeFile(path, treeOf(this.projects.values(), this.rules.stored()))
    if (written.formatBackup && written.previousFormat !== null)
      this.emit('tree.migrated', { path, from: written.previousFormat, backup: written.formatBackup })
  }

  /**
   * Loads a tree file and **reconnects** every replica (`${ENV}` references resolved). A
   * replica that cannot be reached is added as unhealthy and retried by the health checks.
   * Reads this release's files and the original `@mostajs/replicator` 0.2 ones (keyed, no
   * `version`; rule defaults filled in). A malformed file, or one holding a masked password
   * (`***`) → CONFIG_INVALID listing each problem's JSON path; nothing is changed.
   */
  async loadFromFile(path: string): Promise<void> {
    const { tree, format } = await loadTreeFile(path)
    for (const [project, replicas] of Object.entries(tree.replicas)) {
      // fail before touching anything; the path is the one in the file as written
      replicas.forEach((replica, index) =>
        resolveEnvReferences(replica.uri, jsonPath(['replicas', project, format === 1 ? index : replica.name, 'uri'])),
      )
    }
    for (const [project, replicas] of Object.entries(tree.replicas)) {
      for (const { fenced, ...config } of mastersFirst(replicas)) {
        if (this.projects.get(project)?.replicas.has(config.name)) continue
        await this.connectReplica(project, config, { tolerateDown: true, fenced: fenced === true })
      }
      const state = this.projects.get(project)
      if (!state) continue
      if (tree.routing[project]) state.router.strategy = tree.routing[project]
      state.epoch = Math.max(state.epoch, tree.epochs[project] ?? 0)
    }
    this.rules.load(tree.rules)
  }

  /**
   * Saves to `path` after every topology change (add, remove, routing, promotion, rules). A
   * file of an older form there is rewritten in the current one by the first save, which
   * keeps it as `<path>.v<form>.bak` and emits `tree.migrated` (logged as a warning).
   */
  enableAutoPersist(path: string): void {
    this.autoPersistPath = path
    this.schedulePersist()
  }

  /** Stops automatic saving. */
  disableAutoPersist(): void {
    this.autoPersistPath = undefined
  }

  /** Resolves once every pending automatic save is on disk. */
  async flush(): Promise<void> {
    await this.persistQueue
  }

  protected override schedulePersist(): void {
    const path = this.autoPersistPath
    if (!path) return
    this.persistQueue = this.persistQueue.then(() => this.saveToFile(path)).catch((error) => this.report(error))
  }

  // ---------------------------------------------------------------- lifecycle

  /** Stops the monitors and streaming loops and closes every connection. */
  async disconnectAll(): Promise<void> {
    await this.rules.stopAll()
    for (const state of this.projects.values()) this.stopMonitors(state)
    this.stopRetentionMonitor()
    await this.shared?.close()
    await this.persistQueue
    const closing: Promise<void>[] = []
    for (const state of this.projects.values())
      for (const entry of state.replicas.values()) closing.push(entry.dialect.close().catch(() => undefined))
    await Promise.all(closing)
    this.projects.clear()
  }
}

/** No condition on the slave (shared: a plain read allocates nothing for it). */
const ANY_SLAVE: RouteOptions = Object.freeze({})

/** The conditions a session puts on the slave that serves its reads. */
function routeOf(session: ReplicationSession | undefined): RouteOptions {
  if (!session || (session.minSequence === undefined && !session.minApplied.size)) return ANY_SLAVE
  const route: RouteOptions = {}
  if (session.minSequence !== undefined) route.minSequence = session.minSequence
  if (session.minApplied.size) route.minApplied = session.minApplied
  return route
}

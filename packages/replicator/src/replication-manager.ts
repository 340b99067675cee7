import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { hostname } from 'node:os'
import {
  type ChangeStream,
  createDialect,
  EntityService,
  HEARTBEAT_COLLECTION,
  maskSecretsInText,
  maskUri,
  ReplicatorError,
  withTimeout,
  type CaptureBacklog,
  type Dialect,
  type DialectConfig,
  type EntitySchema,
  type NativeReplicationStatus,
} from '@mostajs/replicator-core'
import {
  bidirectionalConfigs,
  DEAD_LETTERS_COLLECTION,
  OFFSETS_COLLECTION,
  openChangeStream,
  RuleRunner,
  validateRule,
  type OpenChangeStreamOptions,
  type ReplicationRuleConfig,
  type RuleObserver,
  type SyncStats,
} from '@mostajs/replicator-cdc'
import { fenceMaster, promoteNativeReplica, repointReplicas, waitForHeartbeat } from '@mostajs/replicator-failover'
import {
  readTreeFile,
  resolveEnvReferences,
  writeTreeFile,
  type ReplicatorTree,
  type StoredRule,
} from '@mostajs/replicator-persistence'
import {
  assertStrategy,
  ReadRouter,
  type ReadRoutingStrategy,
  type RoutingCandidate,
} from '@mostajs/replicator-routing'
import { guardDialect } from './guarded-dialect.js'
import { measureLag, type MasterHeartbeat } from './lag.js'

/** How a replica is kept up to date. */
export type ReplicationKind = 'native' | 'managed'

/** What `addReplica` takes (the original README's shape, plus `replication` and `weight`). */
export interface ReplicaConfig {
  name: string
  role: 'master' | 'slave'
  /** `postgres`, `mysql`, `mariadb`, `sqlite` (its package must be imported). */
  dialect: string
  /** Connection URI; may hold `${ENV}` references, resolved when connecting. */
  uri: string
  pool?: DialectConfig['pool']
  /** What to do with the schemas given to addReplica on this replica: `create` / `update` create missing tables. */
  schemaStrategy?: 'none' | 'validate' | 'create' | 'update'
  /** Largest measured lag (ms) at which this slave serves reads or may be promoted. */
  lagTolerance?: number
  /** `native` (default for slaves): the database replicates itself. `managed`: the replicator streams into it. */
  replication?: ReplicationKind
  /** Share of reads under `weighted` routing (default 1). */
  weight?: number
}

/** A replica's state as the monitors last measured it. */
export type ReplicaState = 'connecting' | 'healthy' | 'lagging' | 'unhealthy' | 'fenced'

/** One row of `getReplicaStatus`. URIs are masked. */
export interface ReplicaStatus {
  project: string
  name: string
  role: 'master' | 'slave'
  dialect: string
  replication: ReplicationKind | null
  status: ReplicaState
  healthy: boolean
  /** Measured lag in ms (heartbeat); null until a heartbeat arrived; 0 for the master. */
  lag: number | null
  lagTolerance: number
  weight: number
  uri: string
  /** Newest master heartbeat sequence applied (as a string: JSON has no bigint). */
  appliedSequence: string | null
  lastHeartbeatAt: Date | null
  /** The database's own replication figures, where it has them. */
  native?: NativeReplicationStatus
  consecutiveFailures: number
  lastError?: string
  /** Reads resolveReadService sent to this replica so far. */
  readsRouted: number
}

/** Result of `getRoutingStatus`. */
export interface RoutingStatus {
  project: string
  strategy: ReadRoutingStrategy
  master: string | null
  /** Slaves that may serve a plain read now (healthy, lag measured and within tolerance). */
  eligible: string[]
  /** Reads served per replica since it was added. */
  readsRouted: Record<string, number>
}

/** Options of {@link ReplicationManager}. */
export interface ReplicationManagerOptions {
  /** Heartbeat write/read period (default 250 ms). */
  heartbeatIntervalMs?: number
  /** Ping period (default 1000 ms). */
  healthCheckIntervalMs?: number
  /** Consecutive failed pings before a replica is unhealthy (default 3). */
  failureThreshold?: number
  /** lagTolerance of slaves that give none (default 1000 ms). */
  defaultLagTolerance?: number
  /** connect() timeout of every replica (default 5000 ms). */
  connectTimeoutMs?: number
  /** How long a promotion waits for the candidate to apply the fenced master's final heartbeat (default 10 s). */
  catchUpTimeoutMs?: number
  /**
   * Identity of this manager's heartbeat row (default: random per manager). Every manager
   * writes and reads its own row, so several application instances on one master never
   * mistake each other's heartbeats for their own.
   */
  heartbeatId?: string
}

/** Options of `resolveReadService`. */
export interface ResolveReadOptions {
  /** Read your own writes: only replicas that applied the session's writes. */
  session?: ReplicationSession
  /** `strong` always reads from the master. */
  consistency?: 'eventual' | 'strong'
}

/** Result of `promoteToMaster`. */
export interface PromotionResult {
  project: string
  promoted: string
  previousMaster: string | null
  epoch: number
  /** The previous master refuses writes at the database level. */
  previousMasterReadOnly: boolean
  forced: boolean
  /** Measured lag of the candidate when it was promoted (ms; null when unknown). */
  lagAtPromotionMs: number | null
  /** What may have been lost (forced promotions), or null. */
  possibleDataLoss: string | null
  repointed: string[]
  needsReattachment: Array<{ name: string; reason: string }>
}

/** The duck-typed @mostajs/mproject ProjectManager. */
export interface ProjectManagerLike {
  hasProject(name: string): boolean
  getProject(name: string): { schemas?: EntitySchema[] } | undefined | null
}

interface ReplicaEntry {
  project: string
  config: ReplicaConfig & { lagTolerance: number; weight: number }
  dialect: Dialect
  connected: boolean
  service: EntityService
  healthy: boolean
  failures: number
  lagMs: number | null
  appliedSequence: bigint | null
  lastHeartbeatAt: Date | null
  fenced: boolean
  native?: NativeReplicationStatus
  lastError?: string
  state: ReplicaState
  readonly label: string
  /** Reads resolveReadService sent here. */
  readsRouted: number
}

interface ProjectState {
  name: string
  replicas: Map<string, ReplicaEntry>
  router: ReadRouter
  schemas: EntitySchema[]
  /** Last heartbeat sequence handed to a write (issued, maybe not yet committed). */
  issued: bigint
  latest?: MasterHeartbeat
  epoch: number
  promoting: boolean
  heartbeatRunning: boolean
  healthRunning: boolean
  timers: NodeJS.Timeout[]
}

const FAMILY: Record<string, string> = {
  postgres: 'postgres',
  postgresql: 'postgres',
  mysql: 'mysql',
  mariadb: 'mysql',
  sqlite: 'sqlite',
}
const familyOf = (dialect: string) => FAMILY[dialect.toLowerCase()] ?? dialect.toLowerCase()

/** Result of `getRuleProgress`. */
export interface RuleProgress {
  rule: string
  /** Source position applied last, as stored in the target with the rows (null before any change). */
  position: SyncStats['position']
  appliedAt: Date | null
  /** Rows kept in `_replicator_dead_letters` for this rule. */
  deadLetters: number
}

/** A continuous streaming loop (see `getStreamState`). */
export interface StreamState {
  /** Rule name (`<rule>.r` for the reverse direction, `managed.<project>.<replica>` for a managed feed). */
  name: string
  kind: 'rule' | 'managed'
  /** Failed attempts since the last success (the loop backs off meanwhile). */
  consecutiveFailures: number
  /** Failed attempts since the loop started. */
  totalFailures: number
  /** Message of the last failure (URIs masked); null after a success. */
  lastError: string | null
  lastSuccessAt: Date | null
}

/**
 * Runs several databases as one: a master and slaves per project, reads routed to slaves
 * whose **measured** lag is within tolerance, read-your-writes sessions, promotion that
 * fences the old master, and a tree file that reloads and reconnects everything.
 *
 * Events: `replica.added`, `replica.removed`, `replica.state`, `replica.promoted`, `rule.batch`, `rule.progress`, `error`.
 *
 * @example
 * const rm = new ReplicationManager()
 * await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: process.env.PRIMARY_URL! })
 * await rm.addReplica('shop', { name: 'r1', role: 'slave', dialect: 'postgres', uri: process.env.REPLICA_URL!, lagTolerance: 500 })
 * rm.setReadRouting('shop', 'least-lag')
 * const users = await rm.resolveReadService('shop').findAll('users', { active: true })
 * const session = rm.session('shop')
 * await session.write().create('users', { id: 'u1', email: 'a@example.com' })
 * await session.read().findById('users', 'u1') // never stale
 */
export class ReplicationManager extends EventEmitter {
  private readonly projects = new Map<string, ProjectState>()
  private readonly options: Required<ReplicationManagerOptions>
  private heartbeatCount = 0
  private rules: StoredRule[] = []
  private readonly runners = new Map<string, RuleRunner>()
  /** Target → source runners of bidirectional rules. */
  private readonly reverseRunners = new Map<string, RuleRunner>()
  /** Continuous streaming loops: rules started with startRule, and managed replicas. */
  private readonly streams = new Map<string, { stop(): Promise<void>; state: StreamState }>()
  /** Streaming period each rule was started with (kept when a promotion restarts it). */
  private readonly ruleIntervals = new Map<string, number>()
  /** Turns runner callbacks into manager events ('rule.batch', 'rule.progress'). */
  private readonly observer: RuleObserver = {
    batchApplied: (info) => {
      this.emit('rule.batch', info)
    },
    snapshotProgress: (info) => {
      this.emit('rule.progress', info)
    },
  }
  private autoPersistPath: string | undefined
  private persistQueue: Promise<void> = Promise.resolve()

  constructor(
    private readonly projectManager?: ProjectManagerLike | null,
    options: ReplicationManagerOptions = {},
  ) {
    super()
    this.options = {
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 250,
      healthCheckIntervalMs: options.healthCheckIntervalMs ?? 1000,
      failureThreshold: options.failureThreshold ?? 3,
      defaultLagTolerance: options.defaultLagTolerance ?? 1000,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      catchUpTimeoutMs: options.catchUpTimeoutMs ?? 10_000,
      heartbeatId: options.heartbeatId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
    }
  }

  // ---------------------------------------------------------------- topology

  /**
   * Connects a replica and adds it to a project (created on first use). Validates the
   * config first: duplicate names, a second master, a native slave of another database kind
   * than its master (use `managed`), unknown projects of the ProjectManager.
   */
  async addReplica(project: string, config: ReplicaConfig, schemas?: EntitySchema[]): Promise<ReplicaStatus> {
    return this.addReplicaInternal(project, config, schemas, false)
  }

  private async addReplicaInternal(
    project: string,
    config: ReplicaConfig,
    schemas: EntitySchema[] | undefined,
    tolerateDown: boolean,
    fenced = false,
  ): Promise<ReplicaStatus> {
    this.validateProjectName(project)
    const normalized = this.validateReplica(project, config, fenced)
    const state = this.projectState(project, true)!
    if (schemas?.length) state.schemas = schemas
    else if (!state.schemas.length) state.schemas = this.projectManager?.getProject(project)?.schemas ?? []

    const dialect = createDialect({
      dialect: normalized.dialect,
      uri: this.resolveUri(project, normalized),
      pool: normalized.pool,
      connectTimeoutMs: this.options.connectTimeoutMs,
    })
    const label = `${project}/${normalized.name}`
    const entry: ReplicaEntry = {
      project,
      config: normalized,
      dialect,
      connected: false,
      healthy: true,
      failures: 0,
      lagMs: normalized.role === 'master' ? 0 : null,
      appliedSequence: null,
      lastHeartbeatAt: null,
      fenced,
      state: 'connecting',
      label,
      readsRouted: 0,
      service: undefined as unknown as EntityService,
    }
    entry.service = new EntityService(guardDialect(dialect, entry), state.schemas)
    try {
      await dialect.connect()
      entry.connected = true
    } catch (error) {
      if (!tolerateDown) {
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
    if (!fenced && normalized.role === 'slave' && normalized.replication === 'managed') this.startManaged(state, entry)
    if (!fenced && normalized.role === 'master')
      for (const slave of state.replicas.values())
        if (slave.config.replication === 'managed' && slave.config.role === 'slave') this.startManaged(state, slave)
    this.emit('replica.added', { project, name: normalized.name, role: normalized.role })
    this.schedulePersist()
    return this.statusOf(entry)
  }

  /** Disconnects a replica and removes it from its project. */
  async removeReplica(project: string, name: string): Promise<void> {
    const state = this.requireProject(project)
    const entry = this.requireReplica(state, name)
    if (entry.config.role === 'slave' && entry.config.replication === 'managed')
      await this.stopManaged(state, entry, true)
    if (entry.config.role === 'master')
      for (const slave of state.replicas.values())
        if (slave.config.replication === 'managed') await this.stopManaged(state, slave, false)
    state.replicas.delete(name)
    await entry.dialect.close().catch(() => undefined)
    if (state.replicas.size === 0) {
      this.stopMonitors(state)
      this.projects.delete(project)
    }
    this.emit('replica.removed', { project, name })
    this.schedulePersist()
  }

  /** Projects that have replicas. */
  listProjects(): string[] {
    return [...this.projects.keys()]
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
   * else the master. Decides from memory: no I/O.
   */
  resolveReadService(project: string, options: ResolveReadOptions = {}): EntityService {
    const state = this.requireProject(project)
    const master = this.masterOf(state)
    if (options.consistency === 'strong') return this.requireMaster(state, master).service
    if (options.session && options.session.project !== project) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `This session belongs to project "${options.session.project}", not "${project}".`,
      )
    }
    const candidates: RoutingCandidate[] = []
    for (const entry of state.replicas.values()) {
      if (entry.config.role !== 'slave' || entry.fenced || !entry.connected) continue
      candidates.push({
        name: entry.config.name,
        healthy: entry.healthy,
        lagMs: entry.lagMs,
        lagToleranceMs: entry.config.lagTolerance,
        weight: entry.config.weight,
        appliedSequence: entry.appliedSequence,
      })
    }
    const minSequence = options.session?.minSequence
    const picked = state.router.pick(candidates, minSequence === undefined ? {} : { minSequence })
    const chosen = picked ? state.replicas.get(picked)! : this.requireMaster(state, master)
    chosen.readsRouted++
    return chosen.service
  }

  /**
   * How reads of a project are routed now: the strategy, the slaves that may serve a plain
   * read at this moment, and the reads each replica served so far.
   */
  getRoutingStatus(project: string): RoutingStatus {
    const state = this.requireProject(project)
    const replicas = [...state.replicas.values()]
    return {
      project,
      strategy: state.router.strategy,
      master: this.masterOf(state)?.config.name ?? null,
      eligible: replicas
        .filter(
          (entry) =>
            entry.config.role === 'slave' &&
            entry.connected &&
            !entry.fenced &&
            entry.healthy &&
            entry.lagMs !== null &&
            entry.lagMs <= entry.config.lagTolerance,
        )
        .map((entry) => entry.config.name),
      readsRouted: Object.fromEntries(replicas.map((entry) => [entry.config.name, entry.readsRouted])),
    }
  }

  /** The EntityService of the project's master. Fails with FENCED once that master is demoted. */
  resolveWriteService(project: string): EntityService {
    const state = this.requireProject(project)
    return this.requireMaster(state, this.masterOf(state)).service
  }

  /**
   * A read-your-writes session: writes through `session.write()` record the master position
   * they reached; `session.read()` then only uses slaves that applied it (else the master).
   */
  session(project: string): ReplicationSession {
    this.requireProject(project)
    return new ReplicationSession(this, project)
  }

  /** @internal The guarded master service of a session; records the position after each write. */
  sessionWriteService(session: ReplicationSession): EntityService {
    const state = this.requireProject(session.project)
    const master = this.requireMaster(state, this.masterOf(state))
    // A heartbeat issued after this write completed commits after it: a slave that applied
    // that heartbeat has the write.
    return new EntityService(
      guardDialect(master.dialect, master, () => session.recordPosition(state.issued + 1n)),
      state.schemas,
    )
  }

  // ---------------------------------------------------------------- status

  /** Every replica of a project with its measured state. URIs are masked. */
  getReplicaStatus(project: string): ReplicaStatus[] {
    return [...this.requireProject(project).replicas.values()].map((entry) => this.statusOf(entry))
  }

  /** Current promotion epoch of a project. */
  getEpoch(project: string): number {
    return this.requireProject(project).epoch
  }

  private statusOf(entry: ReplicaEntry): ReplicaStatus {
    return {
      project: entry.project,
      name: entry.config.name,
      role: entry.config.role,
      dialect: entry.config.dialect,
      replication: entry.config.role === 'slave' ? (entry.config.replication ?? 'native') : null,
      status: entry.state,
      healthy: entry.healthy && entry.connected,
      lag: entry.lagMs,
      lagTolerance: entry.config.lagTolerance,
      weight: entry.config.weight,
      uri: maskUri(entry.dialect.maskedUri),
      appliedSequence: entry.appliedSequence === null ? null : entry.appliedSequence.toString(),
      lastHeartbeatAt: entry.lastHeartbeatAt,
      ...(entry.native ? { native: entry.native } : {}),
      consecutiveFailures: entry.failures,
      ...(entry.lastError ? { lastError: entry.lastError } : {}),
      readsRouted: entry.readsRouted,
    }
  }

  // ---------------------------------------------------------------- promotion

  /**
   * Promotes a slave to master. Refuses with LAG_TOO_HIGH when its measured lag exceeds its
   * tolerance or is unknown (`lagTolerance: 0`: it must have applied the master's last
   * heartbeat), unless `force`. The old master, when reachable, writes a final heartbeat and
   * is made read-only; a native candidate must apply that heartbeat before it is promoted, so
   * nothing committed is lost. The old master is fenced: services resolved from it fail with
   * FENCED. Other native slaves are re-pointed where the database allows it.
   */
  async promoteToMaster(project: string, name: string, options: { force?: boolean } = {}): Promise<PromotionResult> {
    const state = this.requireProject(project)
    const candidate = this.requireReplica(state, name)
    if (candidate.config.role !== 'slave' || candidate.fenced) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `${project}/${name} is ${candidate.fenced ? 'fenced' : 'the master'}; only a slave can be promoted.`,
        { details: { project, name } },
      )
    }
    if (!candidate.connected)
      throw new ReplicatorError(
        'CONNECTION_FAILED',
        `${project}/${name} is not connected (${candidate.lastError ?? 'unreachable'}); it cannot be promoted.`,
      )
    if (state.promoting)
      throw new ReplicatorError('CONFIG_INVALID', `A promotion of project "${project}" is already running.`)
    const force = options.force === true
    state.promoting = true
    try {
      const previous = this.masterOf(state)
      await this.measureNow(state)
      const lagAtPromotionMs = candidate.lagMs
      const tolerance = candidate.config.lagTolerance
      const behind =
        lagAtPromotionMs === null ||
        lagAtPromotionMs > tolerance ||
        (tolerance === 0 &&
          (candidate.appliedSequence === null ||
            (state.latest !== undefined && candidate.appliedSequence < state.latest.sequence)))
      if (behind && !force) {
        throw new ReplicatorError(
          'LAG_TOO_HIGH',
          `${project}/${name} is ${lagAtPromotionMs === null ? 'of unknown lag (no heartbeat applied yet)' : `${lagAtPromotionMs} ms behind`} (tolerance ${tolerance} ms); promoting it could lose writes. Wait for it to catch up, or pass { force: true }.`,
          {
            details: { project, name, lag: lagAtPromotionMs, lagTolerance: tolerance },
          },
        )
      }
      const native = candidate.config.replication !== 'managed'
      let previousMasterReadOnly = false
      let possibleDataLoss: string | null = null
      if (previous && previous.connected) {
        const fence = await fenceMaster(previous.dialect, ++state.issued, this.options.heartbeatId)
        previousMasterReadOnly = fence.readOnly
        if (fence.finalHeartbeat && native) {
          const reached = await waitForHeartbeat(
            candidate.dialect,
            fence.finalHeartbeat.sequence,
            Math.max(tolerance, this.options.catchUpTimeoutMs),
            this.options.heartbeatId,
          )
          if (!reached && !force) {
            if (fence.readOnly) await previous.dialect.setReadOnly?.(false).catch(() => undefined)
            throw new ReplicatorError(
              'LAG_TOO_HIGH',
              `${project}/${name} did not apply the master's final heartbeat within ${Math.max(tolerance, this.options.catchUpTimeoutMs)} ms; the old master was left writable. Retry, or pass { force: true }.`,
              {
                details: { project, name },
              },
            )
          }
          if (!reached)
            possibleDataLoss = `writes after heartbeat ${candidate.appliedSequence ?? 'none'} on ${previous.label} may be missing on ${project}/${name}`
        } else if (!fence.finalHeartbeat) {
          possibleDataLoss = `${previous.label} was unreachable while fencing (${fence.error ?? 'unknown error'}); writes it took after ${project}/${name}'s last applied heartbeat may be lost`
        }
      } else if (previous) {
        possibleDataLoss = `${previous.label} was unreachable; writes after ${project}/${name}'s last applied heartbeat (lag ${lagAtPromotionMs ?? 'unknown'} ms) may be lost`
      }
      if (force && behind && !possibleDataLoss) {
        possibleDataLoss = `writes on ${previous?.label ?? 'the previous master'} that ${project}/${name} had not applied (${lagAtPromotionMs === null ? 'lag unknown' : `${lagAtPromotionMs} ms behind`}) may be lost`
      }
      // Managed slaves were fed from the old master: stop them (and free its capture).
      for (const entry of state.replicas.values()) {
        if (entry.config.role === 'slave' && entry.config.replication === 'managed')
          await this.stopManaged(state, entry, true)
      }
      if (previous) {
        previous.fenced = true
        previous.config.role = 'slave'
        this.updateState(previous)
      }
      if (native) await promoteNativeReplica(candidate.dialect)
      candidate.config.role = 'master'
      candidate.lagMs = 0
      this.updateState(candidate)
      state.epoch++
      const others = [...state.replicas.values()].filter(
        (entry) =>
          entry !== candidate &&
          !entry.fenced &&
          entry.config.role === 'slave' &&
          entry.config.replication !== 'managed' &&
          entry.connected,
      )
      const { repointed, needsReattachment } = native
        ? await repointReplicas(
            others.map((entry) => ({ name: entry.config.name, dialect: entry.dialect })),
            this.resolveUri(project, candidate.config),
          )
        : {
            repointed: [],
            needsReattachment: others.map((entry) => ({
              name: entry.config.name,
              reason: 'its old master was promoted by the replicator (managed); re-attach it to the new master',
            })),
          }
      // Managed slaves and rules follow the new master: a capture there, and a re-seed of each
      // target (the old server's log positions mean nothing on the new one).
      for (const entry of state.replicas.values())
        if (entry.config.role === 'slave' && entry.config.replication === 'managed' && !entry.fenced)
          this.startManaged(state, entry)
      await this.followNewMaster(project, previous)
      const result: PromotionResult = {
        project,
        promoted: name,
        previousMaster: previous?.config.name ?? null,
        epoch: state.epoch,
        previousMasterReadOnly,
        forced: force,
        lagAtPromotionMs,
        possibleDataLoss,
        repointed,
        needsReattachment,
      }
      this.emit('replica.promoted', result)
      this.schedulePersist()
      return result
    } finally {
      state.promoting = false
    }
  }

  // ---------------------------------------------------------------- persistence

  /** Writes the topology (replicas with their URIs as given, routing, rules, epochs) atomically. */
  async saveToFile(path: string): Promise<void> {
    await writeTreeFile(path, this.toTree())
  }

  /**
   * Loads a tree file and **reconnects** every replica (`${ENV}` references resolved). A
   * replica that cannot be reached is added as unhealthy and retried by the health checks.
   * A malformed file → CONFIG_INVALID listing each problem's JSON path; nothing is changed.
   */
  async loadFromFile(path: string): Promise<void> {
    const tree = await readTreeFile(path)
    for (const [project, replicas] of Object.entries(tree.replicas)) {
      replicas.forEach((replica, index) => resolveEnvReferences(replica.uri, `$.replicas.${project}[${index}].uri`)) // fail before touching anything
    }
    for (const [project, replicas] of Object.entries(tree.replicas)) {
      const ordered = [...replicas].sort(
        (a, b) => Number(b.role === 'master' && !b.fenced) - Number(a.role === 'master' && !a.fenced),
      )
      for (const replica of ordered) {
        const { fenced, ...config } = replica
        if (this.projects.get(project)?.replicas.has(config.name)) continue
        await this.addReplicaInternal(project, config, undefined, true, fenced === true)
      }
      const state = this.projects.get(project)
      if (state) {
        if (tree.routing[project]) state.router.strategy = tree.routing[project]!
        state.epoch = Math.max(state.epoch, tree.epochs[project] ?? 0)
      }
    }
    const known = new Set(this.rules.map((rule) => rule.name))
    for (const rule of tree.rules) if (!known.has(rule.name)) this.rules.push(rule)
  }

  /** Saves to `path` after every topology change (add, remove, routing, promotion). */
  enableAutoPersist(path: string): void {
    this.autoPersistPath = path
    this.schedulePersist()
  }

  /** Stops automatic saving. */
  disableAutoPersist(): void {
    this.autoPersistPath = undefined
  }

  // ---------------------------------------------------------------- replication rules (CDC)

  /**
   * Adds a change-data-capture rule from the master of `source` to the master of `target`
   * (any two database kinds): checks every column can be carried, creates the target tables,
   * and sets up the source capture. Run it with `sync(name)`.
   *
   * @example
   * await rm.addReplicationRule({ name: 'users-to-analytics', source: 'shop', target: 'analytics', mode: 'cdc', collections: ['users'] })
   * const stats = await rm.sync('users-to-analytics')
   */
  async addReplicationRule(config: ReplicationRuleConfig): Promise<void> {
    validateRule(config)
    if (this.rules.some((rule) => rule.name === config.name))
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `Rule "${config.name}" already exists; remove it first or pick another name.`,
        { details: { rule: config.name } },
      )
    const runner = this.runnerFor(config)
    await runner.prepare()
    this.runners.set(config.name, runner)
    const reverse = this.reverseRunnerFor(config)
    if (reverse) {
      await reverse.prepare()
      this.reverseRunners.set(config.name, reverse)
    }
    this.rules.push({ ...config })
    this.schedulePersist()
  }

  /** Removes a rule and what its capture holds on the source (replication slot and publication, or triggers). */
  async removeReplicationRule(name: string): Promise<void> {
    const rule = this.requireRule(name)
    await this.stopStream(`rule:${name}`)
    await this.stopStream(`rule:${name}.r`)
    const runner = this.runners.get(name) ?? this.runnerFor(rule as unknown as ReplicationRuleConfig)
    await runner.teardown()
    const reverse = this.reverseRunners.get(name) ?? this.reverseRunnerFor(rule as unknown as ReplicationRuleConfig)
    await reverse?.teardown()
    this.runners.delete(name)
    this.reverseRunners.delete(name)
    this.rules = this.rules.filter((candidate) => candidate.name !== name)
    this.schedulePersist()
  }

  /** The replication rules (as stored in the tree file). */
  listRules(): StoredRule[] {
    return this.rules.map((rule) => ({ ...rule }))
  }

  /** Snapshot (first time), then applies every pending captured change; resolves with the rule's stats. */
  async sync(name: string): Promise<SyncStats> {
    const rule = this.requireRule(name)
    let runner = this.runners.get(name)
    if (!runner) {
      runner = this.runnerFor(rule as unknown as ReplicationRuleConfig)
      await runner.prepare()
      this.runners.set(name, runner)
    }
    const forward = await runner.sync()
    let reverse = this.reverseRunners.get(name)
    if (!reverse && rule.mode === 'bidirectional') {
      reverse = this.reverseRunnerFor(rule as unknown as ReplicationRuleConfig)!
      await reverse.prepare()
      this.reverseRunners.set(name, reverse)
    }
    return reverse ? { ...forward, reverse: await reverse.sync() } : forward
  }

  /**
   * Streams a rule continuously: applies pending changes every `intervalMs` (default
   * `REPLICATOR_INTERVAL_MS` or 200 ms). Errors are reported on 'error' and retried with
   * backoff; the offset only advances with applied batches.
   */
  async startRule(name: string, options: { intervalMs?: number } = {}): Promise<void> {
    const rule = this.requireRule(name)
    if (this.streams.has(`rule:${name}`)) return
    let runner = this.runners.get(name)
    if (!runner) {
      runner = this.runnerFor(rule as unknown as ReplicationRuleConfig)
      this.runners.set(name, runner)
    }
    const intervalMs =
      options.intervalMs ?? this.ruleIntervals.get(name) ?? (Number(process.env.REPLICATOR_INTERVAL_MS) || 200)
    this.ruleIntervals.set(name, intervalMs)
    this.startStream(`rule:${name}`, runner, intervalMs)
    if (rule.mode === 'bidirectional') {
      let reverse = this.reverseRunners.get(name)
      if (!reverse)
        this.reverseRunners.set(name, (reverse = this.reverseRunnerFor(rule as unknown as ReplicationRuleConfig)!))
      this.startStream(`rule:${name}.r`, reverse, intervalMs)
    }
  }

  /** Stops a rule's continuous streaming (after its current batch). */
  async stopRule(name: string): Promise<void> {
    this.requireRule(name)
    await this.stopStream(`rule:${name}`)
    await this.stopStream(`rule:${name}.r`)
  }

  /**
   * How the continuous streaming of a rule (or of the feed of a managed replica, named
   * `managed.<project>.<replica>`) is going; null when it is not streaming.
   */
  getStreamState(name: string): StreamState | null {
    const stream =
      this.streams.get(`rule:${name}`) ?? [...this.streams.values()].find((candidate) => candidate.state.name === name)
    return stream ? { ...stream.state } : null
  }

  /** Every streaming loop: rules (and their reverse direction) and managed replica feeds. */
  listStreams(): StreamState[] {
    return [...this.streams.values()].map((stream) => ({ ...stream.state }))
  }

  /**
   * What each capture holds on its source (WAL retained by a PostgreSQL slot, unconfirmed
   * SQLite changelog rows); captures whose source cannot tell are left out.
   */
  async captureBacklogs(): Promise<Array<{ capture: string; source: string } & CaptureBacklog>> {
    const captures: Array<{ capture: string; project: string }> = []
    for (const rule of this.rules) {
      if (rule.mode === 'snapshot') continue
      captures.push({ capture: rule.name, project: String(rule.source) })
      if (rule.mode === 'bidirectional') captures.push({ capture: `${rule.name}.r`, project: String(rule.target) })
    }
    for (const state of this.projects.values()) {
      for (const entry of state.replicas.values())
        if (entry.config.replication === 'managed')
          captures.push({ capture: this.managedRuleName(state.name, entry.config.name), project: state.name })
    }
    const found: Array<{ capture: string; source: string } & CaptureBacklog> = []
    for (const { capture, project } of captures) {
      const state = this.projects.get(project)
      const master = state && this.masterOf(state)
      if (!master?.connected || !master.dialect.captureBacklog) continue
      const backlog = await master.dialect.captureBacklog(capture).catch(() => null)
      if (backlog) found.push({ capture, source: `${project}/${master.config.name}`, ...backlog })
    }
    return found
  }

  private startStream(key: string, runner: RuleRunner, intervalMs: number): void {
    let stopped = false
    let timer: NodeJS.Timeout | undefined
    let running: Promise<void> = Promise.resolve()
    let delay = intervalMs
    const state: StreamState = {
      name: runner.config.name,
      kind: key.startsWith('managed:') ? 'managed' : 'rule',
      consecutiveFailures: 0,
      totalFailures: 0,
      lastError: null,
      lastSuccessAt: null,
    }
    const tick = async (): Promise<void> => {
      if (stopped) return
      try {
        await runner.sync()
        delay = intervalMs
        state.consecutiveFailures = 0
        state.lastError = null
        state.lastSuccessAt = new Date()
      } catch (error) {
        this.report(error)
        state.consecutiveFailures++
        state.totalFailures++
        state.lastError = maskSecretsInText((error as Error).message)
        delay = Math.min(Math.max(delay * 2, 100), 30_000) // target or source down: back off
      }
      if (stopped) return
      timer = setTimeout(() => {
        running = tick()
      }, delay)
      timer.unref()
    }
    running = tick()
    this.streams.set(key, {
      state,
      async stop() {
        stopped = true
        clearTimeout(timer)
        await running
      },
    })
  }

  private async stopStream(key: string): Promise<void> {
    const stream = this.streams.get(key)
    this.streams.delete(key)
    await stream?.stop()
  }

  /** Name of the internal rule that feeds a managed replica. */
  private managedRuleName(project: string, name: string): string {
    return `managed.${project}.${name}`.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 48)
  }

  /** Feeds a managed slave from its project's master (all collections, and the heartbeat for lag). */
  private startManaged(state: ProjectState, slave: ReplicaEntry): void {
    const master = this.masterOf(state)
    if (!master || !master.connected || !slave.connected || slave.fenced) return
    const key = `managed:${state.name}:${slave.config.name}`
    if (this.streams.has(key)) return
    const runner = new RuleRunner(
      {
        name: this.managedRuleName(state.name, slave.config.name),
        source: `${state.name}/${master.config.name}`,
        target: `${state.name}/${slave.config.name}`,
        mode: 'cdc',
        collections: ['*'],
        alsoCarry: [HEARTBEAT_COLLECTION],
        origin: master.label,
      },
      master.dialect,
      slave.dialect,
      this.observer,
    )
    this.startStream(key, runner, Math.min(this.options.heartbeatIntervalMs, 200))
  }

  private async stopManaged(state: ProjectState, slave: ReplicaEntry, dropCapture: boolean): Promise<void> {
    await this.stopStream(`managed:${state.name}:${slave.config.name}`)
    const master = this.masterOf(state)
    if (dropCapture && master?.dialect.dropCapture)
      await master.dialect
        .dropCapture(this.managedRuleName(state.name, slave.config.name))
        .catch((error) => this.report(error))
  }

  /**
   * What a rule's target has stored, so it survives restarts (unlike the counters of
   * `getSyncStats`): the source position applied last, when, and the dead letters kept.
   */
  async getRuleProgress(name: string): Promise<RuleProgress> {
    const rule = this.requireRule(name)
    const target = this.requireMaster(
      this.requireProject(String(rule.target)),
      this.masterOf(this.requireProject(String(rule.target))),
    )
    const missingTable = (error: unknown) => {
      if (ReplicatorError.isInstance(error) && error.code === 'COLLECTION_NOT_FOUND') return null // no sync yet
      throw error
    }
    const offset = await target.dialect.findOne(OFFSETS_COLLECTION, { rule: name }).catch(missingTable)
    const deadLetters = await target.dialect.count(DEAD_LETTERS_COLLECTION, { rule: name }).catch(missingTable)
    return {
      rule: name,
      position: offset?.position ? (JSON.parse(String(offset.position)) as RuleProgress['position']) : null,
      appliedAt: offset?.updated_at instanceof Date ? offset.updated_at : null,
      deadLetters: deadLetters ?? 0,
    }
  }

  /**
   * The captured changes of a project's master as an async iterable (at least once: a batch
   * is confirmed when the loop has gone past it). See `openChangeStream`.
   *
   * @example
   * for await (const event of await rm.openChangeStream('shop', { name: 'audit', collections: ['orders'] })) console.log(event)
   */
  async openChangeStream(project: string, options: OpenChangeStreamOptions): Promise<ChangeStream> {
    const state = this.requireProject(project)
    return openChangeStream(this.requireMaster(state, this.masterOf(state)).dialect, options)
  }

  /** Counters of a rule (zeros before its first sync). */
  getSyncStats(name: string): SyncStats {
    const rule = this.requireRule(name)
    const runner = this.runners.get(name)
    const reverse = this.reverseRunners.get(name)
    if (runner) return reverse ? { ...runner.getStats(), reverse: reverse.getStats() } : runner.getStats()
    return {
      ruleName: rule.name,
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
  }

  private runnerFor(config: ReplicationRuleConfig): RuleRunner {
    const direction = config.mode === 'bidirectional' ? bidirectionalConfigs(config)[0] : config
    const source = this.requireMaster(
      this.requireProject(config.source),
      this.masterOf(this.requireProject(config.source)),
    )
    const target = this.requireMaster(
      this.requireProject(config.target),
      this.masterOf(this.requireProject(config.target)),
    )
    return new RuleRunner({ ...direction, origin: source.label }, source.dialect, target.dialect, this.observer)
  }

  /** The target → source runner of a bidirectional rule (undefined for other modes). */
  private reverseRunnerFor(config: ReplicationRuleConfig): RuleRunner | undefined {
    if (config.mode !== 'bidirectional') return undefined
    const [, reverse] = bidirectionalConfigs(config)
    const source = this.requireMaster(
      this.requireProject(reverse.source),
      this.masterOf(this.requireProject(reverse.source)),
    )
    const target = this.requireMaster(
      this.requireProject(reverse.target),
      this.masterOf(this.requireProject(reverse.target)),
    )
    return new RuleRunner({ ...reverse, origin: source.label }, source.dialect, target.dialect, this.observer)
  }

  /**
   * After a promotion in `project`: every rule reading or writing it gets runners on the new
   * master (streams restarted where they ran), and the captures the old master held for them
   * are dropped when it can still be reached.
   */
  private async followNewMaster(project: string, previous: ReplicaEntry | undefined): Promise<void> {
    for (const rule of this.rules) {
      if (rule.source !== project && rule.target !== project) continue
      const streaming = this.streams.has(`rule:${rule.name}`)
      await this.stopStream(`rule:${rule.name}`)
      await this.stopStream(`rule:${rule.name}.r`)
      const before = this.runners.get(rule.name)?.getStats()
      const reverseBefore = this.reverseRunners.get(rule.name)?.getStats()
      this.runners.delete(rule.name)
      this.reverseRunners.delete(rule.name)
      if (before) {
        const runner = this.runnerFor(rule as unknown as ReplicationRuleConfig)
        runner.carryStatsFrom(before)
        this.runners.set(rule.name, runner)
      }
      if (reverseBefore) {
        const reverse = this.reverseRunnerFor(rule as unknown as ReplicationRuleConfig)!
        reverse.carryStatsFrom(reverseBefore)
        this.reverseRunners.set(rule.name, reverse)
      }
      if (previous?.connected && rule.mode !== 'snapshot') {
        const oldCapture = rule.source === project ? rule.name : rule.mode === 'bidirectional' ? `${rule.name}.r` : null
        if (oldCapture) await previous.dialect.dropCapture?.(oldCapture).catch((error) => this.report(error))
      }
      if (streaming) await this.startRule(rule.name).catch((error) => this.report(error))
    }
  }

  private requireRule(name: string): StoredRule {
    const rule = this.rules.find((candidate) => candidate.name === name)
    if (!rule)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `No replication rule "${name}". Rules: ${this.rules.map((r) => r.name).join(', ') || '(none)'}.`,
        { details: { rule: name } },
      )
    return rule
  }

  private toTree(): ReplicatorTree {
    const tree: ReplicatorTree = { version: 1, replicas: {}, routing: {}, rules: this.rules, epochs: {} }
    for (const state of this.projects.values()) {
      tree.replicas[state.name] = [...state.replicas.values()].map((entry) => {
        const { pool, schemaStrategy, replication, ...rest } = entry.config
        return {
          ...rest,
          ...(pool ? { pool } : {}),
          ...(schemaStrategy ? { schemaStrategy } : {}),
          ...(replication ? { replication } : {}),
          ...(entry.fenced ? { fenced: true } : {}),
        }
      })
      tree.routing[state.name] = state.router.strategy
      tree.epochs[state.name] = state.epoch
    }
    return tree
  }

  private schedulePersist(): void {
    const path = this.autoPersistPath
    if (!path) return
    this.persistQueue = this.persistQueue.then(() => this.saveToFile(path)).catch((error) => this.report(error))
  }

  /** Resolves once every pending automatic save is on disk. */
  async flush(): Promise<void> {
    await this.persistQueue
  }

  // ---------------------------------------------------------------- lifecycle

  /** Stops every monitor and closes every connection. */
  async disconnectAll(): Promise<void> {
    await Promise.all([...this.streams.keys()].map((key) => this.stopStream(key)))
    this.runners.clear()
    this.reverseRunners.clear()
    for (const state of this.projects.values()) this.stopMonitors(state)
    await this.persistQueue
    const closing: Promise<void>[] = []
    for (const state of this.projects.values())
      for (const entry of state.replicas.values()) closing.push(entry.dialect.close().catch(() => undefined))
    await Promise.all(closing)
    this.projects.clear()
  }

  // ---------------------------------------------------------------- monitors

  private startMonitors(state: ProjectState): void {
    if (state.timers.length) return
    const heartbeat = setInterval(() => void this.heartbeatTick(state), this.options.heartbeatIntervalMs)
    const health = setInterval(() => void this.healthTick(state), this.options.healthCheckIntervalMs)
    heartbeat.unref()
    health.unref()
    state.timers.push(heartbeat, health)
    void this.heartbeatTick(state)
  }

  private stopMonitors(state: ProjectState): void {
    for (const timer of state.timers) clearInterval(timer)
    state.timers = []
  }

  /** Writes the master's heartbeat, then reads every slave's and updates its lag. */
  private async heartbeatTick(state: ProjectState): Promise<void> {
    if (state.heartbeatRunning || state.promoting) return
    state.heartbeatRunning = true
    try {
      await this.measureNow(state)
    } catch (error) {
      this.report(error)
    } finally {
      state.heartbeatRunning = false
    }
  }

  /** One measurement: a master heartbeat (when reachable) and every slave's applied heartbeat. */
  private async measureNow(state: ProjectState): Promise<void> {
    const master = this.masterOf(state)
    if (master && master.connected && master.dialect.writeHeartbeat) {
      try {
        const source = this.options.heartbeatId
        if (state.issued === 0n) state.issued = (await master.dialect.readHeartbeat?.(source))?.sequence ?? 0n // continue after a restart
        const written = await master.dialect.writeHeartbeat(++state.issued, source)
        if (++this.heartbeatCount % 2000 === 0) {
          // rows of managers that stopped long ago
          await master.dialect
            .delete(HEARTBEAT_COLLECTION, { at: { $lt: new Date(written.at.getTime() - 86_400_000) } })
            .catch(() => undefined)
        }
        state.latest = { ...written, confirmedAtMs: Date.now() }
        master.lastHeartbeatAt = written.at
        master.appliedSequence = written.sequence
      } catch (error) {
        master.lastError = (error as Error).message
      }
    }
    const slaves = [...state.replicas.values()].filter(
      (entry) => entry.config.role === 'slave' && !entry.fenced && entry.connected && entry.dialect.readHeartbeat,
    )
    await Promise.all(
      slaves.map(async (entry) => {
        try {
          const applied = await entry.dialect.readHeartbeat!(this.options.heartbeatId)
          entry.appliedSequence = applied?.sequence ?? null
          entry.lastHeartbeatAt = applied?.at ?? null
          entry.lagMs = measureLag(state.latest, applied, Date.now())
        } catch (error) {
          entry.lastError = (error as Error).message
        }
        this.updateState(entry)
      }),
    )
  }

  /** Pings every replica; reconnects those that were never reached. */
  private async healthTick(state: ProjectState): Promise<void> {
    if (state.healthRunning) return
    state.healthRunning = true
    try {
      await Promise.all(
        [...state.replicas.values()].map(async (entry) => {
          try {
            if (!entry.connected) {
              await entry.dialect.connect()
              entry.connected = true
              await this.applySchemas(entry, state.schemas)
              if (entry.config.role === 'slave' && entry.config.replication === 'managed')
                this.startManaged(state, entry)
              if (entry.config.role === 'master')
                for (const slave of state.replicas.values())
                  if (slave.config.replication === 'managed' && slave.config.role === 'slave')
                    this.startManaged(state, slave)
            }
            await withTimeout(entry.dialect.ping(), Math.max(1000, this.options.healthCheckIntervalMs))
            entry.failures = 0
            entry.healthy = true
            entry.lastError = undefined
            if (
              entry.config.role === 'slave' &&
              entry.dialect.replicationStatus &&
              entry.config.replication !== 'managed' &&
              !entry.fenced
            ) {
              entry.native = await entry.dialect.replicationStatus().catch(() => entry.native)
            }
          } catch (error) {
            entry.failures++
            entry.lastError = (error as Error).message
            if (entry.failures >= this.options.failureThreshold) entry.healthy = false
          }
          this.updateState(entry)
        }),
      )
    } finally {
      state.healthRunning = false
    }
  }

  private updateState(entry: ReplicaEntry): void {
    let next: ReplicaState
    if (entry.fenced) next = 'fenced'
    else if (!entry.connected && entry.failures === 0) next = 'connecting'
    else if (!entry.healthy || !entry.connected) next = 'unhealthy'
    else if (entry.config.role === 'master') next = 'healthy'
    else next = entry.lagMs === null || entry.lagMs > entry.config.lagTolerance ? 'lagging' : 'healthy'
    if (next !== entry.state) {
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
  }

  private report(error: unknown): void {
    // Monitors never throw into the application; listeners of 'error' hear about problems.
    if (this.listenerCount('error') > 0) this.emit('error', error)
  }

  // ---------------------------------------------------------------- helpers

  private async applySchemas(entry: ReplicaEntry, schemas: EntitySchema[]): Promise<void> {
    const strategy = entry.config.schemaStrategy ?? 'none'
    if (strategy === 'none' || !schemas.length) return
    const writable = entry.config.role === 'master' || entry.config.replication === 'managed'
    for (const schema of schemas) {
      if ((strategy === 'create' || strategy === 'update') && writable) await entry.dialect.ensureCollection(schema)
      else await entry.dialect.describeCollection(schema.collection) // validate: the table must exist
    }
  }

  private resolveUri(project: string, config: ReplicaConfig): string {
    return resolveEnvReferences(config.uri, `${project}/${config.name}.uri`)
  }

  private validateProjectName(project: string): void {
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

  private validateReplica(project: string, config: ReplicaConfig, fenced: boolean): ReplicaEntry['config'] {
    const where = `Replica "${config?.name}" of project "${project}"`
    if (!config || typeof config.name !== 'string' || config.name.trim() === '')
      throw new ReplicatorError('CONFIG_INVALID', `A replica of project "${project}" needs a non-empty name.`)
    if (config.role !== 'master' && config.role !== 'slave')
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `${where}: role must be 'master' or 'slave', got ${JSON.stringify(config.role)}.`,
      )
    if (typeof config.uri !== 'string' || config.uri === '')
      throw new ReplicatorError('CONFIG_INVALID', `${where} needs a uri.`)
    if (config.lagTolerance !== undefined && !(Number.isFinite(config.lagTolerance) && config.lagTolerance >= 0))
      throw new ReplicatorError('CONFIG_INVALID', `${where}: lagTolerance is in ms and must be ≥ 0.`)
    if (config.weight !== undefined && !(Number.isFinite(config.weight) && config.weight >= 0))
      throw new ReplicatorError('CONFIG_INVALID', `${where}: weight must be ≥ 0.`)
    if (config.replication !== undefined && config.replication !== 'native' && config.replication !== 'managed')
      throw new ReplicatorError('CONFIG_INVALID', `${where}: replication must be 'native' or 'managed'.`)
    const state = this.projects.get(project)
    if (state?.replicas.has(config.name))
      throw new ReplicatorError('CONFIG_INVALID', `${where} already exists; remove it first or pick another name.`, {
        details: { project, name: config.name },
      })
    const master = state ? this.masterOf(state) : undefined
    if (config.role === 'master' && master && !fenced) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `Project "${project}" already has a master ("${master.config.name}"); add "${config.name}" as a slave, or promote it.`,
        { details: { project, name: config.name } },
      )
    }
    if (config.role === 'slave' && (config.replication ?? 'native') === 'native') {
      if (familyOf(config.dialect) === 'sqlite') {
        throw new ReplicatorError(
          'CONFIG_INVALID',
          `${where}: SQLite has no native replication; add it with replication: 'managed' (the replicator streams the master's changes into it).`,
        )
      }
      if (master && familyOf(master.config.dialect) !== familyOf(config.dialect)) {
        throw new ReplicatorError(
          'CONFIG_INVALID',
          `${where} is a ${config.dialect} slave of a ${master.config.dialect} master: a database cannot natively replicate another kind. Use replication: 'managed'.`,
        )
      }
    }
    if (config.role === 'master' && state) {
      for (const slave of state.replicas.values()) {
        if (
          slave.config.role === 'slave' &&
          (slave.config.replication ?? 'native') === 'native' &&
          familyOf(slave.config.dialect) !== familyOf(config.dialect)
        ) {
          throw new ReplicatorError(
            'CONFIG_INVALID',
            `${where}: its native slave "${slave.config.name}" is ${slave.config.dialect}, which cannot natively replicate ${config.dialect}. Re-add that slave with replication: 'managed'.`,
          )
        }
      }
    }
    return {
      ...config,
      lagTolerance: config.lagTolerance ?? this.options.defaultLagTolerance,
      weight: config.weight ?? 1,
      ...(config.role === 'slave' ? { replication: config.replication ?? 'native' } : {}),
    }
  }

  private projectState(project: string, create: boolean): ProjectState | undefined {
    let state = this.projects.get(project)
    if (!state && create) {
      state = {
        name: project,
        replicas: new Map(),
        router: new ReadRouter('round-robin'),
        schemas: [],
        issued: 0n,
        epoch: 0,
        promoting: false,
        heartbeatRunning: false,
        healthRunning: false,
        timers: [],
      }
      this.projects.set(project, state)
    }
    return state
  }

  private requireProject(project: string): ProjectState {
    const state = this.projects.get(project)
    if (!state) {
      throw new ReplicatorError(
        'REPLICA_NOT_FOUND',
        `Project "${project}" has no replicas. Known projects: ${this.listProjects().join(', ') || '(none)'}.`,
        { details: { project } },
      )
    }
    return state
  }

  private requireReplica(state: ProjectState, name: string): ReplicaEntry {
    const entry = state.replicas.get(name)
    if (!entry) {
      throw new ReplicatorError(
        'REPLICA_NOT_FOUND',
        `Project "${state.name}" has no replica "${name}". Replicas: ${[...state.replicas.keys()].join(', ')}.`,
        { details: { project: state.name, name } },
      )
    }
    return entry
  }

  private masterOf(state: ProjectState): ReplicaEntry | undefined {
    for (const entry of state.replicas.values()) if (entry.config.role === 'master' && !entry.fenced) return entry
    return undefined
  }

  private requireMaster(state: ProjectState, master: ReplicaEntry | undefined): ReplicaEntry {
    if (!master)
      throw new ReplicatorError(
        'REPLICA_NOT_FOUND',
        `Project "${state.name}" has no master; add one or promote a slave.`,
        { details: { project: state.name } },
      )
    return master
  }
}

/**
 * A read-your-writes session of one project. Reads after a write through `write()` only go
 * to slaves that applied it (or to the master until one has).
 */
export class ReplicationSession {
  /** Master heartbeat sequence a slave must have applied to serve this session's reads. */
  minSequence: bigint | undefined

  constructor(
    private readonly manager: ReplicationManager,
    readonly project: string,
  ) {}

  /** The master's service; each write moves the session's position forward. */
  write(): EntityService {
    return this.manager.sessionWriteService(this)
  }

  /** A service that sees every write made through this session. */
  read(): EntityService {
    return this.manager.resolveReadService(this.project, { session: this })
  }

  /** @internal */
  recordPosition(sequence: bigint): void {
    if (this.minSequence === undefined || sequence > this.minSequence) this.minSequence = sequence
  }
}

import type { DialectConfig, EntitySchema, EntityService, NativeReplicationStatus } from '@mostajs/replicator-core'
import type { PromotionOutcome } from '@mostajs/replicator-failover'
import type { FallbackReason, ReadRoutingStrategy, ReplicaState } from '@mostajs/replicator-routing'
import type { ReplicationSession } from './session.js'

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

/** One row of `getReplicaStatus`. URIs are masked. */
export interface ReplicaStatus {
  project: string
  name: string
  role: 'master' | 'slave'
  dialect: string
  replication: ReplicationKind | null
  /** The finer state: healthy, lagging, unhealthy, fenced, connecting. */
  status: ReplicaState
  /** The original monitor's coarse state: `up` (reachable), `down`, or `connecting` (first connection under way). */
  state: 'up' | 'down' | 'connecting'
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
  /** Reads the master served because no slave could, by reason (`slaves_lagging`, `session_not_applied`, …). */
  masterFallbacks: Partial<Record<FallbackReason, number>>
}

/** Options of `resolveReadService`. */
export interface ResolveReadOptions {
  /** Read your own writes: only replicas that applied the session's writes. */
  session?: ReplicationSession
  /** `strong` always reads from the master. */
  consistency?: 'eventual' | 'strong'
  /**
   * The service returned accepts writes (default false: they fail with READ_ONLY, since a
   * write on a slave diverges from the master, or fails there). Raw `query()` calls that only
   * read (SELECT, WITH without a write, SHOW, EXPLAIN, VALUES) are always allowed.
   */
  allowWrites?: boolean
}

/** The replica `pickReplica` chose. */
export interface PickedReplica {
  project: string
  name: string
  role: 'master' | 'slave'
  /** Dialect name (`postgres`, `mariadb`, `sqlite`, …). */
  dialect: string
  /** Its URI with the password masked. */
  uri: string
  /** Its read service (writes fail with READ_ONLY); `service.dialect.query(sql)` for raw reads. */
  service: EntityService
}

/** Result of `promoteToMaster`. */
export interface PromotionResult extends PromotionOutcome {
  project: string
  promoted: string
  previousMaster: string | null
  epoch: number
}

/** The duck-typed @mostajs/mproject ProjectManager. */
export interface ProjectManagerLike {
  hasProject(name: string): boolean
  getProject(name: string): { schemas?: EntitySchema[] } | undefined | null
}

/** A capture that holds too much log on its source, or whose slot is at risk or lost. */
export interface RetentionWarning {
  capture: string
  /** `project/replica` of the source. */
  source: string
  retainedBytes: number | null
  walStatus: string | null
  reason: string
}

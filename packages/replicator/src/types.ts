import type { EntitySchema, EntityService, NativeReplicationStatus } from '@mostajs/replicator-core'
import type { StoredReplica } from '@mostajs/replicator-persistence'
import type { PromotionOutcome } from '@mostajs/replicator-failover'
import type { FallbackReason, ReadRoutingStrategy, ReplicaState } from '@mostajs/replicator-routing'
import type { ReplicationSession } from './session.js'

/** What `addReplica` takes: the tree file's replica without `fenced` (one zod schema defines both). */
export type ReplicaConfig = Omit<StoredReplica, 'fenced'>

/** How a replica is kept up to date. */
export type ReplicationKind = NonNullable<ReplicaConfig['replication']>

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

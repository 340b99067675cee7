import type { Dialect, NativeReplicationStatus } from '@mostajs/replicator-core'

/** A replica's state as the monitors last measured it. */
export type ReplicaState = 'connecting' | 'healthy' | 'lagging' | 'unhealthy' | 'fenced'

/** What the monitors measure of one replica; they update these fields in place. */
export interface MonitoredReplica {
  readonly dialect: Dialect
  connected: boolean
  healthy: boolean
  /** Consecutive failed health checks. */
  failures: number
  /** Measured lag in ms (0 for the master); null until a heartbeat arrived. */
  lagMs: number | null
  /** Newest master heartbeat sequence applied. */
  appliedSequence: bigint | null
  /**
   * Newest heartbeat sequence applied of every writer (each application instance's manager
   * writes its own): what read-your-writes tokens of other instances are checked against.
   */
  appliedBy?: ReadonlyMap<string, bigint>
  lastHeartbeatAt: Date | null
  /** The database's own replication figures, where it has them. */
  native?: NativeReplicationStatus
  lastError?: string
}

/** What decides a replica's state. */
export interface ReplicaStateInputs {
  fenced: boolean
  isMaster: boolean
  connected: boolean
  healthy: boolean
  failures: number
  lagMs: number | null
  lagToleranceMs: number
}

/**
 * The state machine of a replica: fenced wins; then never reached (`connecting`), failing
 * (`unhealthy`), and for slaves whether the measured lag is known and within tolerance.
 */
export function replicaStateOf(replica: ReplicaStateInputs): ReplicaState {
  if (replica.fenced) return 'fenced'
  if (!replica.connected && replica.failures === 0) return 'connecting'
  if (!replica.healthy || !replica.connected) return 'unhealthy'
  if (replica.isMaster) return 'healthy'
  return replica.lagMs === null || replica.lagMs > replica.lagToleranceMs ? 'lagging' : 'healthy'
}

import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { DEFAULT_LEASE_MS } from '@mostajs/replicator-cdc'
import type { CaptureSettings, TopologyStore } from '@mostajs/replicator-core'
import type { ReplicatorLogger } from './manager-logger.js'

/** Options of {@link ReplicationManager}. */
export interface ReplicationManagerOptions {
  /**
   * Where background work is logged (topology changes, promotions, re-seeds, errors): a pino
   * logger or anything with its `(fields, message)` methods. Without one nothing is logged;
   * the same facts are events either way.
   */
  logger?: ReplicatorLogger
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
  /** Streaming period of rules started without one (default 200 ms). */
  ruleIntervalMs?: number
  /**
   * How long a rule stays with the manager applying it without renewal (default 5 s). One
   * manager applies a rule at a time (a lease in the rule's offset row, owned by heartbeatId);
   * the others wait and take it over when this long has passed since the last renewal.
   */
  ruleLeaseMs?: number
  /**
   * A capture holding more log than this on its source (PostgreSQL slot WAL) is reported: a
   * `capture.retention` event, a `/health` warning and `replicator_capture_retention_exceeded`
   * (default 1 GiB). A slot whose `wal_status` is `unreserved` or `lost` is reported whatever its size.
   */
  maxRetainedWalBytes?: number
  /** How often capture retention is checked (default 30 s). */
  retentionCheckIntervalMs?: number
  /** Memory limits of change capture on every replica (spill threshold and directory, binlog buffer). */
  capture?: CaptureSettings
  /**
   * Where several processes (application instances, the `run` service) agree on each
   * project's master and epoch: a promotion made by one is followed by the others within a
   * second (writes go to the new master; services resolved before fail with FENCED). An
   * `EtcdTopologyStore` (`@mostajs/replicator-store-etcd`) for several processes; none (the
   * default) for one. The manager watches it but does not close it.
   */
  topologyStore?: TopologyStore
  /**
   * With a topologyStore: a view of a project the store has not confirmed for this long is
   * stale, and calls through its writable services wait until it is read again (default
   * 1000 ms; it is read every third of that; read services do not wait). A process that was
   * paused (SIGSTOP, a long GC pause, a frozen VM)
   * thus follows a promotion made meanwhile before it writes anything. The price: while the
   * store cannot be reached, calls fail with FENCED (as Patroni demotes a primary that lost its
   * DCS). `Infinity` keeps writing to the known master whatever the store's state, at the risk
   * that a paused or partitioned process writes to a master demoted meanwhile.
   */
  maxViewAgeMs?: number
  /**
   * Automatic failover (off by default). When a project's master stays unreachable for
   * `failureThreshold` health checks, and no slave still receives from it (their view confirms
   * it), the most caught-up healthy native slave within `maxLagMs` (default: its lagTolerance)
   * is promoted. With a shared store only the project's coordinator (an etcd lease of
   * `coordinatorLeaseMs`, default 3 s) does it. No second automatic failover of a project
   * within `antiFlapMs` (default 60 s).
   */
  autoFailover?: boolean | AutoFailoverOptions
}

/** See {@link ReplicationManagerOptions.autoFailover}. */
export interface AutoFailoverOptions {
  maxLagMs?: number
  antiFlapMs?: number
  coordinatorLeaseMs?: number
}

/** The options with every default filled in (the topology store stays optional). */
export type ResolvedOptions = Required<Omit<ReplicationManagerOptions, 'topologyStore' | 'autoFailover' | 'logger'>> &
  Pick<ReplicationManagerOptions, 'topologyStore'> & {
    autoFailover: (Required<Omit<AutoFailoverOptions, 'maxLagMs'>> & Pick<AutoFailoverOptions, 'maxLagMs'>) | null
  }

/** The options with every default filled in. */
export function resolveOptions(options: ReplicationManagerOptions): ResolvedOptions {
  const auto = options.autoFailover === true ? {} : options.autoFailover || null
  return {
    topologyStore: options.topologyStore,
    autoFailover: auto
      ? { ...auto, antiFlapMs: auto.antiFlapMs ?? 60_000, coordinatorLeaseMs: auto.coordinatorLeaseMs ?? 3000 }
      : null,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 250,
    healthCheckIntervalMs: options.healthCheckIntervalMs ?? 1000,
    failureThreshold: options.failureThreshold ?? 3,
    defaultLagTolerance: options.defaultLagTolerance ?? 1000,
    connectTimeoutMs: options.connectTimeoutMs ?? 5000,
    catchUpTimeoutMs: options.catchUpTimeoutMs ?? 10_000,
    heartbeatId: options.heartbeatId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
    ruleIntervalMs: options.ruleIntervalMs ?? 200,
    ruleLeaseMs: options.ruleLeaseMs ?? DEFAULT_LEASE_MS,
    maxRetainedWalBytes: options.maxRetainedWalBytes ?? 1024 ** 3,
    retentionCheckIntervalMs: options.retentionCheckIntervalMs ?? 30_000,
    capture: options.capture ?? {},
    maxViewAgeMs: options.maxViewAgeMs ?? 1000,
  }
}

import {
  dialectDescriptor,
  maskUri,
  replicationFamilyOf,
  ReplicatorError,
  type EntityService,
} from '@mostajs/replicator-core'
import { validateReplicaConfig } from '@mostajs/replicator-persistence'
import {
  type FallbackReason,
  type HealthMonitor,
  type LagMonitor,
  type ReadRouter,
  type MonitoredReplica,
  type ReplicaState,
  type RoutingCandidate,
} from '@mostajs/replicator-routing'
import type { EntitySchema } from '@mostajs/replicator-core'
import type { ReplicaConfig, ReplicaStatus } from './types.js'

/** A replica of a project: its config, connection, service and measured state. */
export interface ReplicaEntry extends MonitoredReplica {
  project: string
  config: ReplicaConfig & { lagTolerance: number; weight: number }
  service: EntityService
  /** The same replica for reads only (resolveReadService): its writes fail with READ_ONLY. */
  readService: EntityService
  fenced: boolean
  state: ReplicaState
  /** `project/replica`. */
  readonly label: string
  /** Reads resolveReadService sent here. */
  readsRouted: number
  /** A fenced former master made read-only by this process since it last answered ('pending' meanwhile). */
  databaseFence?: 'pending' | 'done'
}

/** One project: its replicas, read router, schemas, lag monitor and promotion epoch. */
export interface ProjectState {
  name: string
  replicas: Map<string, ReplicaEntry>
  router: ReadRouter
  schemas: EntitySchema[]
  lag: LagMonitor
  health: HealthMonitor | undefined
  epoch: number
  promoting: boolean
  /** When this process last failed the project over automatically (anti-flap). */
  lastAutoFailoverAt?: number
  /** The automatic failover check under way (one at a time). */
  failoverCheck?: Promise<void>
  /** No slave qualified during this outage (reported once). */
  failoverRefused?: boolean
  /** A slave reports a writable primary while the master is one too (reported once). */
  splitBrainReported?: boolean
  /** Since when a slave has reported itself the writable primary while the master is gone (follow mode). */
  outsideSince?: number
  /** What the read router sees of the slaves, rebuilt after any measurement or topology change (reads allocate nothing). */
  candidates: RoutingCandidate[] | null
  /** Reads sent to the master because no slave could serve them, by reason. */
  masterFallbacks: Map<FallbackReason, number>
}

/** The project's master (not fenced), if any. */
export function masterOf(state: ProjectState): ReplicaEntry | undefined {
  for (const entry of state.replicas.values()) if (entry.config.role === 'master' && !entry.fenced) return entry
  return undefined
}

export function requireMaster(state: ProjectState): ReplicaEntry {
  const master = masterOf(state)
  if (!master)
    throw new ReplicatorError(
      'REPLICA_NOT_FOUND',
      `Project "${state.name}" has no master; add one or promote a slave.`,
      {
        details: { project: state.name },
      },
    )
  return master
}

export function requireReplica(state: ProjectState, name: string): ReplicaEntry {
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

export const isManagedSlave = (entry: ReplicaEntry) =>
  entry.config.role === 'slave' && entry.config.replication === 'managed'

/** The native slaves this process reaches now (not fenced, not managed): promotion candidates, re-pointed followers. */
export function liveNativeSlaves(state: ProjectState): ReplicaEntry[] {
  return [...state.replicas.values()].filter(
    (entry) => entry.config.role === 'slave' && !entry.fenced && !isManagedSlave(entry) && entry.connected,
  )
}

/** What the read router knows of a slave (in memory, no I/O). */
export function routingCandidateOf(entry: ReplicaEntry): RoutingCandidate {
  return {
    name: entry.config.name,
    healthy: entry.healthy,
    lagMs: entry.lagMs,
    lagToleranceMs: entry.config.lagTolerance,
    weight: entry.config.weight,
    appliedSequence: entry.appliedSequence,
    appliedBy: entry.appliedBy ?? null, // always present: candidates keep one shape (the read path stays fast)
    excluded: entry.config.role !== 'slave' || entry.fenced || !entry.connected,
  }
}

/**
 * Checks a replica config against the project before it is added: its shape (JSON paths),
 * duplicate names, a second master, a native slave of another database kind than its master
 * (use `managed`). Returns it with its defaults filled in.
 */
export function validateReplica(
  project: string,
  config: ReplicaConfig,
  state: ProjectState | undefined,
  options: { fenced: boolean; defaultLagTolerance: number },
): ReplicaEntry['config'] {
  if (!config || typeof config.name !== 'string' || config.name.trim() === '')
    throw new ReplicatorError('CONFIG_INVALID', `A replica of project "${project}" needs a non-empty name.`)
  const where = `Replica "${config.name}" of project "${project}"`
  validateReplicaConfig(config, where)
  if (state?.replicas.has(config.name))
    throw new ReplicatorError('CONFIG_INVALID', `${where} already exists; remove it first or pick another name.`, {
      details: { project, name: config.name },
    })
  const master = state ? masterOf(state) : undefined
  if (config.role === 'master' && master && !options.fenced) {
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `Project "${project}" already has a master ("${master.config.name}"); add "${config.name}" as a slave, or promote it.`,
      { details: { project, name: config.name } },
    )
  }
  if (config.role === 'slave' && (config.replication ?? 'native') === 'native') {
    if (replicationFamilyOf(config.dialect) === null)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `${where}: ${dialectDescriptor(config.dialect)!.label} has no native replication; add it with replication: 'managed' (the replicator streams the master's changes into it).`,
      )
    if (master && replicationFamilyOf(master.config.dialect) !== replicationFamilyOf(config.dialect))
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `${where} is a ${config.dialect} slave of a ${master.config.dialect} master: a database cannot natively replicate another kind. Use replication: 'managed'.`,
      )
  }
  if (config.role === 'master' && state) {
    for (const slave of state.replicas.values()) {
      const nativeSlave = slave.config.role === 'slave' && (slave.config.replication ?? 'native') === 'native'
      if (nativeSlave && replicationFamilyOf(slave.config.dialect) !== replicationFamilyOf(config.dialect))
        throw new ReplicatorError(
          'CONFIG_INVALID',
          `${where}: its native slave "${slave.config.name}" is ${slave.config.dialect}, which cannot natively replicate ${config.dialect}. Re-add that slave with replication: 'managed'.`,
        )
    }
  }
  return {
    ...config,
    lagTolerance: config.lagTolerance ?? options.defaultLagTolerance,
    weight: config.weight ?? 1,
    ...(config.role === 'slave' ? { replication: config.replication ?? 'native' } : {}),
  }
}

/** What getReplicaStatus reports of a replica (its URI masked). */
export function replicaStatusOf(entry: ReplicaEntry): ReplicaStatus {
  const up = entry.healthy && entry.connected
  return {
    project: entry.project,
    name: entry.config.name,
    role: entry.config.role,
    dialect: entry.config.dialect,
    replication: entry.config.role === 'slave' ? (entry.config.replication ?? 'native') : null,
    status: entry.state,
    state: entry.state === 'connecting' ? 'connecting' : up ? 'up' : 'down',
    healthy: up,
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

import { isManagedSlave, type ProjectState, type ReplicaEntry } from './topology.js'

/**
 * The slave an automatic failover promotes: a healthy, connected, native slave within
 * `maxLagMs` (its own lagTolerance when not given), the most caught-up first (the newest
 * heartbeat applied, then the smallest lag). Null when none qualifies.
 */
export function failoverCandidate(state: ProjectState, maxLagMs: number | undefined): ReplicaEntry | null {
  const eligible = [...state.replicas.values()].filter(
    (entry) =>
      entry.config.role === 'slave' &&
      !entry.fenced &&
      !isManagedSlave(entry) &&
      entry.connected &&
      entry.healthy &&
      entry.lagMs !== null &&
      entry.lagMs <= (maxLagMs ?? entry.config.lagTolerance),
  )
  eligible.sort(
    (a, b) =>
      Number((b.appliedSequence ?? -1n) - (a.appliedSequence ?? -1n)) || (a.lagMs ?? Infinity) - (b.lagMs ?? Infinity),
  )
  return eligible[0] ?? null
}

/**
 * The slaves' view of the master: true when one of them still receives from it (its
 * replication connection is up), so the master is alive and only this process lost it.
 */
export async function slavesStillReceive(state: ProjectState): Promise<boolean> {
  const slaves = [...state.replicas.values()].filter(
    (entry) => entry.config.role === 'slave' && !entry.fenced && !isManagedSlave(entry) && entry.connected,
  )
  const views = await Promise.all(
    slaves.map((entry) => entry.dialect.replication?.status().catch(() => null) ?? Promise.resolve(null)),
  )
  return views.some((status) => status?.receiving === true)
}

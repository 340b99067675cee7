import { ReplicatorError } from '@mostajs/replicator-core'
import type { ResolvedOptions } from './options.js'
import type { SharedTopology } from './shared-topology.js'
import { liveNativeSlaves, type ProjectState, type ReplicaEntry } from './project-state.js'

/**
 * The slave an automatic failover promotes: a healthy, connected, native slave within
 * `maxLagMs` (its own lagTolerance when not given), the most caught-up first (the newest
 * heartbeat applied, then the smallest lag). Null when none qualifies.
 */
export function failoverCandidate(state: ProjectState, maxLagMs: number | undefined): ReplicaEntry | null {
  const eligible = liveNativeSlaves(state).filter(
    (entry) => entry.healthy && entry.lagMs !== null && entry.lagMs <= (maxLagMs ?? entry.config.lagTolerance),
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
  const slaves = liveNativeSlaves(state)
  const views = await Promise.all(
    slaves.map((entry) => entry.dialect.replication?.status().catch(() => null) ?? Promise.resolve(null)),
  )
  return views.some((status) => status?.receiving === true)
}

/**
 * The slave to promote now that the master is down, or null when this process must not act:
 * within the anti-flap window, not the coordinator, or the slaves still receive from the
 * master. Throws LAG_TOO_HIGH (once per outage) when no slave qualifies.
 */
export async function automaticFailoverCandidate(
  state: ProjectState,
  auto: NonNullable<ResolvedOptions['autoFailover']>,
  shared: SharedTopology | null,
): Promise<ReplicaEntry | null> {
  if (Date.now() - (state.lastAutoFailoverAt ?? -Infinity) < auto.antiFlapMs) return null
  if (shared && !(await shared.isCoordinator(state.name))) return null
  if (await slavesStillReceive(state)) return null // the master is alive for its slaves: not confirmed
  const candidate = failoverCandidate(state, auto.maxLagMs)
  if (!candidate) {
    if (state.failoverRefused) return null // said once per outage, not at every check
    state.failoverRefused = true
    throw new ReplicatorError(
      'LAG_TOO_HIGH',
      `Project "${state.name}": its master is down and no healthy native slave is within the failover lag; nothing was promoted.`,
      { details: { project: state.name } },
    )
  }
  state.lastAutoFailoverAt = Date.now()
  state.failoverRefused = false
  return candidate
}

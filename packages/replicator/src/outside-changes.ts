import { ReplicatorError } from '@mostajs/replicator-core'
import { liveNativeSlaves, masterOf, type ProjectState, type ReplicaEntry } from './project-state.js'

/** What this process should do about the roles the databases report themselves. */
export type OutsideChange =
  | { kind: 'none' }
  /** A slave became a writable primary and the master is gone or no longer writable: follow it. */
  | { kind: 'follow'; next: ReplicaEntry }
  /** A slave became a writable primary while the master still is one: two writable primaries. */
  | { kind: 'conflict'; slaves: ReplicaEntry[] }

/**
 * A role change made outside the manager (Patroni, a managed database's failover, an operator's
 * `pg_promote()`): a native slave that reports itself a writable primary. It is followed when
 * the master is unreachable, read-only or a replica itself; never when the master is still a
 * writable primary (two writable primaries: the manager does not pick one).
 */
export function outsideChange(state: ProjectState): OutsideChange {
  const promoted = liveNativeSlaves(state).filter(
    (entry) =>
      entry.healthy && entry.failures === 0 && entry.native?.role === 'primary' && entry.native.readOnly !== true,
  )
  if (!promoted.length) return { kind: 'none' }
  const master = masterOf(state)
  const masterWritable =
    master &&
    master.healthy &&
    master.failures === 0 &&
    master.native?.role !== 'replica' &&
    master.native?.readOnly !== true
  if (masterWritable || promoted.length > 1) return { kind: 'conflict', slaves: promoted }
  return { kind: 'follow', next: promoted[0]! }
}

/** The error reported (once) while slaves and the master all report themselves writable primaries. */
export function splitBrainError(project: string, slaves: ReplicaEntry[]): ReplicatorError {
  const names = slaves.map((entry) => entry.config.name)
  return new ReplicatorError(
    'FENCED',
    `Project "${project}": ${names.join(', ')} report(s) a writable primary while the master is one too; nothing is followed until one of them is read-only or gone.`,
    { details: { project, primaries: names } },
  )
}

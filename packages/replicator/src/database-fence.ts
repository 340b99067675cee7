import type { ReplicaEntry } from './project-state.js'

/**
 * A fenced former master that answers and still acts as a writable primary (it was
 * unreachable when it was demoted, here or by another process) is made read-only and its
 * sessions are ended by the first process that sees it: no instance can write to it then,
 * whatever its view of the topology. Runs after each health check of a replica.
 */
export function fenceIfStillPrimary(
  entry: ReplicaEntry,
  on: { fenced(info: { project: string; name: string; sessionsEnded: number }): void; report(error: unknown): void },
): void {
  if (entry.failures > 0 || !entry.connected) entry.databaseFence = undefined // check it again once it is back
  const replication = entry.dialect.replication
  if (!entry.fenced || entry.failures > 0 || !entry.connected || entry.databaseFence || !replication) return
  entry.databaseFence = 'pending'
  const fence = async () => {
    const status = await replication.status()
    if (status.role === 'primary' && status.readOnly !== true) {
      await replication.setReadOnly(true)
      const sessionsEnded = await replication.endSessions()
      on.fenced({ project: entry.project, name: entry.config.name, sessionsEnded })
    }
    entry.databaseFence = 'done'
  }
  fence().catch((error: unknown) => {
    entry.databaseFence = undefined // tried again at the next check
    on.report(error)
  })
}

import { maskSecretsInText, ReplicatorError, type Dialect, type Heartbeat } from '@mostajs/replicator-core'

/**
 * Waits until `replica` has applied heartbeat `sequence` (of writer `source`) (polling every `pollMs`); resolves
 * with the heartbeat it reached, or null when `timeoutMs` passed first.
 */
export async function waitForHeartbeat(
  replica: Dialect,
  sequence: bigint,
  timeoutMs: number,
  source?: string,
  pollMs = 25,
): Promise<Heartbeat | null> {
  if (!replica.heartbeat)
    throw new ReplicatorError(
      'NOT_SUPPORTED',
      `[replicator:${replica.name}] ${replica.maskedUri} cannot report heartbeats.`,
    )
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const heartbeat = await replica.heartbeat!.read(source).catch(() => null)
    if (heartbeat && heartbeat.sequence >= sequence) return heartbeat
    if (Date.now() >= deadline) return null
    await new Promise((resolve) => setTimeout(resolve, pollMs))
  }
}

/** Outcome of fencing a master. */
export interface FenceResult {
  /** The database itself refuses writes now (read-only); false when it was unreachable or cannot. */
  readOnly: boolean
  /** The last heartbeat written before fencing, when the master was reachable. */
  finalHeartbeat: Heartbeat | null
  error?: string
}

/**
 * Fences a master before a promotion. It turns read-only first, then ends the other sessions
 * (their open transactions roll back instead of committing later), and only then writes the
 * final heartbeat: the position every replica must reach, after every commit the old master
 * will ever make. Never throws: an unreachable master is reported, and the caller decides.
 */
export async function fenceMaster(master: Dialect, finalSequence: bigint, source?: string): Promise<FenceResult> {
  let finalHeartbeat: Heartbeat | null = null
  let readOnly = false
  try {
    if (!master.replication) {
      if (master.heartbeat) finalHeartbeat = await master.heartbeat.write(finalSequence, source)
      return { readOnly: false, finalHeartbeat, error: `${master.name} cannot be made read-only` }
    }
    await master.replication.setReadOnly(true)
    readOnly = true
    await master.replication.endSessions()
    if (master.heartbeat) finalHeartbeat = await writeAfterEndedSessions(master, finalSequence, source)
    return { readOnly, finalHeartbeat }
  } catch (error) {
    return { readOnly, finalHeartbeat, error: error instanceof Error ? error.message : String(error) }
  }
}

/** The final heartbeat; tried again when it met a pooled connection that was just ended. */
async function writeAfterEndedSessions(master: Dialect, sequence: bigint, source?: string): Promise<Heartbeat> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await master.heartbeat!.write(sequence, source, { evenIfReadOnly: true })
    } catch (error) {
      if (attempt === 3) throw error
    }
  }
}

/** Promotes a native replica at the database level (pg_promote, MariaDB STOP/RESET SLAVE + read_only=0). */
export async function promoteNativeReplica(replica: Dialect): Promise<void> {
  if (!replica.replication) {
    throw new ReplicatorError(
      'NOT_SUPPORTED',
      `[replicator:${replica.name}] ${replica.maskedUri} has no native promotion; add it with replication: 'managed' instead.`,
    )
  }
  await replica.replication.promote()
}

/**
 * Re-points native replicas at a new primary. Those that cannot follow it (no hook, an
 * error) are reported as needing re-attachment rather than failing the promotion.
 */
export async function repointReplicas(
  replicas: Array<{ name: string; dialect: Dialect }>,
  primaryUri: string,
): Promise<{ repointed: string[]; needsReattachment: Array<{ name: string; reason: string }> }> {
  const repointed: string[] = []
  const needsReattachment: Array<{ name: string; reason: string }> = []
  for (const replica of replicas) {
    if (!replica.dialect.replication) {
      needsReattachment.push({
        name: replica.name,
        reason: `${replica.dialect.name} cannot be re-pointed automatically`,
      })
      continue
    }
    try {
      await replica.dialect.replication!.replicateFrom(primaryUri)
      repointed.push(replica.name)
    } catch (error) {
      needsReattachment.push({
        name: replica.name,
        reason: maskSecretsInText(error instanceof Error ? error.message : String(error)),
      })
    }
  }
  return { repointed, needsReattachment }
}

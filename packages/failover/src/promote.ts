import type { Dialect } from '@mostajs/replicator-core'
import { catchUpTimedOut, isBehind, lagTooHigh, possibleLoss, type CandidateLag } from './promotion-gate.js'
import { fenceMaster, promoteNativeReplica, repointReplicas, waitForHeartbeat } from './promotion.js'

/** A replica taking part in a promotion. */
export interface PromotionParticipant {
  /** `project/replica`, for messages. */
  label: string
  dialect: Dialect
  connected: boolean
}

/** Everything a promotion needs from the topology, and the hooks it calls around the switch. */
export interface PromotionContext {
  candidate: PromotionParticipant & { lagToleranceMs: number; replication: 'native' | 'managed' }
  /** The current master, if the project has one. */
  previous: PromotionParticipant | undefined
  force: boolean
  /** The heartbeat row the final heartbeat is written to (the manager's own). */
  heartbeatId: string
  /** Longest wait for a native candidate to apply the final heartbeat (at least its tolerance). */
  catchUpTimeoutMs: number
  /** Measures lag now and returns the candidate's figures. */
  measure(): Promise<CandidateLag>
  /** The next heartbeat sequence of the project (for the final heartbeat). */
  nextHeartbeatSequence(): bigint
  /** A managed candidate: apply everything its feed has not (after the final heartbeat was written). */
  drainManaged?(): Promise<void>
  /** After the gate and fencing: stop what the old master fed, and fence it in memory. */
  beforeSwitch(): Promise<void>
  /** After the database promoted the candidate: it becomes the master in memory. */
  switchRoles(): void
  /** The native slaves to re-point at the new master, with its URI. */
  followers(): { replicas: Array<{ name: string; dialect: Dialect }>; primaryUri: string }
  /** After the switch (feeds and rules follow the new master). */
  afterSwitch(): Promise<void>
}

/** What a promotion did and what it may have lost. */
export interface PromotionOutcome {
  /** The previous master refuses writes at the database level. */
  previousMasterReadOnly: boolean
  forced: boolean
  /** Measured lag of the candidate when it was promoted (ms; null when unknown). */
  lagAtPromotionMs: number | null
  /** What may have been lost (forced promotions, unreachable old master), or null. */
  possibleDataLoss: string | null
  repointed: string[]
  needsReattachment: Array<{ name: string; reason: string }>
}

/**
 * Promotes a slave. The gate refuses a candidate that could lose writes (LAG_TOO_HIGH) unless
 * forced. A reachable old master is fenced (read-only, its other sessions ended, then a final
 * heartbeat); the candidate (a managed one is fed up to it first) must apply that heartbeat
 * before it is promoted (else the old master is made writable again and the promotion
 * refused), so nothing committed is lost. Then the roles
 * switch, the database promotes the candidate, and the other native slaves follow it.
 */
export async function promote(context: PromotionContext): Promise<PromotionOutcome> {
  const { candidate, previous, force } = context
  const lag = await context.measure()
  const behind = isBehind(lag, candidate.lagToleranceMs)
  if (behind && !force) throw lagTooHigh(candidate.label, lag.lagMs, candidate.lagToleranceMs)
  const native = candidate.replication !== 'managed'
  let previousMasterReadOnly = false
  let possibleDataLoss: string | null = null
  if (previous?.connected) {
    const fence = await fenceMaster(previous.dialect, context.nextHeartbeatSequence(), context.heartbeatId)
    previousMasterReadOnly = fence.readOnly
    if (fence.finalHeartbeat) {
      // a managed candidate is fed by the replicator: feed it up to the final heartbeat now
      // (a failure shows as the heartbeat not reached)
      if (!native) await context.drainManaged?.().catch(() => undefined)
      const waitMs = Math.max(candidate.lagToleranceMs, context.catchUpTimeoutMs)
      const reached = await waitForHeartbeat(
        candidate.dialect,
        fence.finalHeartbeat.sequence,
        waitMs,
        context.heartbeatId,
      )
      if (!reached && !force) {
        if (fence.readOnly) await previous.dialect.replication?.setReadOnly(false).catch(() => undefined)
        throw catchUpTimedOut(candidate.label, waitMs)
      }
      if (!reached) possibleDataLoss = possibleLoss.notCaughtUp(previous.label, candidate.label, lag.appliedSequence)
    } else {
      possibleDataLoss = possibleLoss.unreachableWhileFencing(previous.label, candidate.label, fence.error)
    }
  } else if (previous) {
    possibleDataLoss = possibleLoss.unreachable(previous.label, candidate.label, lag.lagMs)
  }
  if (force && behind && !possibleDataLoss)
    possibleDataLoss = possibleLoss.forcedWhileBehind(previous?.label, candidate.label, lag.lagMs)
  await context.beforeSwitch()
  if (native) await promoteNativeReplica(candidate.dialect)
  context.switchRoles()
  const followers = context.followers()
  const { repointed, needsReattachment } = native
    ? await repointReplicas(followers.replicas, followers.primaryUri)
    : {
        repointed: [],
        needsReattachment: followers.replicas.map(({ name }) => ({
          name,
          reason: 'its old master was promoted by the replicator (managed); re-attach it to the new master',
        })),
      }
  await context.afterSwitch()
  return {
    previousMasterReadOnly,
    forced: force,
    lagAtPromotionMs: lag.lagMs,
    possibleDataLoss,
    repointed,
    needsReattachment,
  }
}

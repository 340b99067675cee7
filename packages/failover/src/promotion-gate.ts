import { ReplicatorError } from '@mostajs/replicator-core'

/** A candidate's replication figures, measured just before a promotion. */
export interface CandidateLag {
  /** Measured lag (ms); null when it applied no heartbeat yet. */
  lagMs: number | null
  /** Newest master heartbeat it applied. */
  appliedSequence: bigint | null
  /** Newest heartbeat the master confirmed (undefined when none was written yet). */
  latestSequence: bigint | undefined
}

/**
 * True when promoting the candidate could lose writes: its lag is unknown or above its
 * tolerance, or (`lagTolerance: 0`) it has not applied the master's last heartbeat.
 */
export function isBehind(lag: CandidateLag, toleranceMs: number): boolean {
  if (lag.lagMs === null || lag.lagMs > toleranceMs) return true
  if (toleranceMs !== 0) return false
  return lag.appliedSequence === null || (lag.latestSequence !== undefined && lag.appliedSequence < lag.latestSequence)
}

function describeLag(lagMs: number | null): string {
  return lagMs === null ? 'of unknown lag (no heartbeat applied yet)' : `${lagMs} ms behind`
}

/** LAG_TOO_HIGH for a candidate refused by the gate. */
export function lagTooHigh(replica: string, lagMs: number | null, toleranceMs: number): ReplicatorError {
  return new ReplicatorError(
    'LAG_TOO_HIGH',
    `${replica} is ${describeLag(lagMs)} (tolerance ${toleranceMs} ms); promoting it could lose writes. Wait for it to catch up, or pass { force: true }.`,
    { details: { replica, lag: lagMs, lagTolerance: toleranceMs } },
  )
}

/** LAG_TOO_HIGH for a candidate that did not apply the fenced master's final heartbeat in time. */
export function catchUpTimedOut(replica: string, waitedMs: number): ReplicatorError {
  return new ReplicatorError(
    'LAG_TOO_HIGH',
    `${replica} did not apply the master's final heartbeat within ${waitedMs} ms; the old master was left writable. Retry, or pass { force: true }.`,
    { details: { replica } },
  )
}

/** The wording of what a promotion may have lost, one case each. */
export const possibleLoss = {
  notCaughtUp: (previous: string, candidate: string, appliedSequence: bigint | null) =>
    `writes after heartbeat ${appliedSequence ?? 'none'} on ${previous} may be missing on ${candidate}`,
  unreachableWhileFencing: (previous: string, candidate: string, error: string | undefined) =>
    `${previous} was unreachable while fencing (${error ?? 'unknown error'}); writes it took after ${candidate}'s last applied heartbeat may be lost`,
  unreachable: (previous: string, candidate: string, lagMs: number | null) =>
    `${previous} was unreachable; writes after ${candidate}'s last applied heartbeat (lag ${lagMs ?? 'unknown'} ms) may be lost`,
  forcedWhileBehind: (previous: string | undefined, candidate: string, lagMs: number | null) =>
    `writes on ${previous ?? 'the previous master'} that ${candidate} had not applied (${lagMs === null ? 'lag unknown' : `${lagMs} ms behind`}) may be lost`,
}

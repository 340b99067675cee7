import type { Heartbeat } from '@mostajs/replicator-core'

/** The newest heartbeat written on a project's master, with the local time it was confirmed. */
export interface MasterHeartbeat extends Heartbeat {
  /** Local clock (ms) when the write returned. */
  confirmedAtMs: number
}

/**
 * Measured lag of a replica (ms), as pt-heartbeat measures it: the master's current time
 * minus the master time of the newest heartbeat the replica has applied. 0 when it applied
 * the master's latest heartbeat; null when nothing arrived yet. Both times come from the
 * master's clock, so clock skew between servers does not matter.
 */
export function measureLag(
  latest: MasterHeartbeat | undefined,
  applied: Heartbeat | null,
  nowMs: number,
): number | null {
  if (!applied || !latest) return null
  if (applied.sequence >= latest.sequence) return 0
  const masterNow = latest.at.getTime() + Math.max(0, nowMs - latest.confirmedAtMs)
  return Math.max(0, Math.round(masterNow - applied.at.getTime()))
}

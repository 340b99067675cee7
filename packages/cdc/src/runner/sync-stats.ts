import type { Position } from '@mostajs/replicator-core'

/** Per-collection counters of a rule. */
export interface CollectionStats {
  collection: string
  snapshotRows: number
  created: number
  updated: number
  deleted: number
  deadLettered: number
}

/**
 * What a rule did so far (the original `getSyncStats` shape, plus ours), as the runner counts
 * it; `SyncStats` adds the names monitors written for the original library read.
 */
export interface RuleCounters {
  ruleName: string
  lastSync: Date | null
  /** Rows written and rows deleted on the target (snapshot copies, streamed changes, mirror deletes). */
  recordsSynced: number
  created: number
  updated: number
  deleted: number
  skipped: number
  errors: number
  deadLettered: number
  /** Times the target was re-seeded: the source master changed (promotion), or the source lost the capture's position. */
  reseeds: number
  /** Duration of the last sync() in ms. */
  duration: number
  /** Age of the newest applied change when it was applied (ms); 0 when nothing was pending. */
  lagMs: number
  /** Source position applied last (null before the first change). */
  position: Position | null
  details: CollectionStats[]
  /** Tables that `collections: ['*']` found but cannot carry (no primary key, a column of no portable type), with why. */
  setAside?: Array<{ collection: string; reason: string }>
  /** Set while another process holds the rule's lease: this one applies nothing and waits for it to expire. */
  standby?: { owner: string; until: Date }
}

/** A rule's counters as `getSyncStats` returns them: ours, and the original monitor's names beside them. */
export interface SyncStats extends RuleCounters {
  /** `created` under the original monitor's name. */
  inserted: number
  /** `errors` under the original monitor's name. */
  failed: number
  /** `duration` under the original monitor's name (ms). */
  durationMs: number
  /** `lastSync` under the original monitor's name. */
  lastRun: Date | null
  /** The target → source direction of a bidirectional rule. */
  reverse?: SyncStats
}

/** The counters with the original monitor's names added (`inserted`, `failed`, `durationMs`, `lastRun`). */
export function syncStatsOf(counters: RuleCounters): SyncStats {
  return {
    ...counters,
    inserted: counters.created,
    failed: counters.errors,
    durationMs: counters.duration,
    lastRun: counters.lastSync,
  }
}

/** Callbacks a runner calls as it works (monitoring, progress bars). They must not throw. */
export interface RuleObserver {
  /** After each committed target transaction of captured changes. */
  batchApplied?(info: { rule: string; events: number; durationMs: number; lagMs: number }): void
  /** The source lost the capture's position (slot invalidated, logs purged): it was recreated and the target re-seeded. */
  captureLost?(info: { rule: string; reason: string }): void
  /** During a snapshot, after each page written; `total` is the source's row count when the copy began. */
  snapshotProgress?(info: { rule: string; collection: string; done: number; total: number }): void
}

/** Counters of a rule before its first sync. */
export function emptySyncStats(ruleName: string): RuleCounters {
  return {
    ruleName,
    lastSync: null,
    recordsSynced: 0,
    created: 0,
    updated: 0,
    deleted: 0,
    skipped: 0,
    errors: 0,
    deadLettered: 0,
    reseeds: 0,
    duration: 0,
    lagMs: 0,
    position: null,
    details: [],
  }
}

/** Counters of one collection before anything was carried. */
export function emptyCollectionStats(collection: string): CollectionStats {
  return { collection, snapshotRows: 0, created: 0, updated: 0, deleted: 0, deadLettered: 0 }
}

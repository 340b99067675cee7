import type { RuleObserver } from '@mostajs/replicator-cdc'
import type { TreeFormat } from '@mostajs/replicator-persistence'
import type { ReplicaState } from '@mostajs/replicator-routing'
import type { PromotionResult, RetentionWarning } from './types.js'

type Info<K extends keyof RuleObserver> = Parameters<NonNullable<RuleObserver[K]>>[0]

/** The events of a ReplicationManager and what each carries. */
export interface ReplicationManagerEvents {
  'replica.added': [{ project: string; name: string; role: 'master' | 'slave' }]
  'replica.removed': [{ project: string; name: string }]
  'replica.state': [{ project: string; name: string; state: ReplicaState; previous: ReplicaState; lag: number | null }]
  'replica.promoted': [PromotionResult]
  /** This process promoted a slave on its own: the master was down (see `autoFailover`). */
  'failover.automatic': [PromotionResult]
  /**
   * A change of master made elsewhere is followed here: a promotion by another process (heard
   * from the shared topology store), or one made outside the manager (`outside`: a slave
   * reported itself a writable primary while the master was gone or read-only).
   */
  'topology.followed': [
    { project: string; master: string; previousMaster: string | null; epoch: number; outside?: boolean },
  ]
  /**
   * A fenced former master answered again still acting as a primary (it was unreachable when
   * it was demoted): this process made it read-only and ended its sessions.
   */
  'replica.fenced': [{ project: string; name: string; sessionsEnded: number }]
  /** After each committed target transaction of a rule or managed feed. */
  'rule.batch': [Info<'batchApplied'>]
  /** A rule's capture lost its position on the source; it was recreated and the target re-seeded (no silent gap). */
  'rule.reseeded': [Info<'captureLost'>]
  /** During snapshots, after each page written. */
  'rule.progress': [Info<'snapshotProgress'>]
  /** A capture started holding too much log on its source, or its slot is at risk or lost (see `maxRetainedWalBytes`). */
  'capture.retention': [RetentionWarning]
  /**
   * A save replaced a tree file of an older form (`'0.2'`: the original library's, or version
   * 1) by the current one; the replaced file is kept at `backup`.
   */
  'tree.migrated': [{ path: string; from: TreeFormat; backup: string }]
  /** Problems of background work (monitors, streaming loops); never thrown into the application. */
  error: [unknown]
}

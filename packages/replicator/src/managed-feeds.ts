import { HEARTBEAT_COLLECTION, type Dialect } from '@mostajs/replicator-core'
import { managedFeedName, type RuleSet } from '@mostajs/replicator-cdc'
import type { ManagerHost } from './manager-host.js'
import { isManagedSlave, masterOf, type ProjectState, type ReplicaEntry } from './project-state.js'

/**
 * The feeds of managed replicas: the replicator streams every collection of a project's
 * master (and the heartbeat, for lag) into each managed slave, and moves the feeds when the
 * master changes.
 */
export class ManagedFeeds {
  constructor(
    private readonly host: Pick<ManagerHost, 'report'>,
    private readonly ruleSet: RuleSet,
    /** How often a feed applies what the master captured. */
    private readonly intervalMs: number,
  ) {}

  /** The managed slaves of a project. */
  managedSlaves(state: ProjectState): ReplicaEntry[] {
    return [...state.replicas.values()].filter(isManagedSlave)
  }

  /** Starts the feeds a replica takes part in: its own (managed slave), or its slaves' (master). */
  startFor(state: ProjectState, entry: ReplicaEntry): void {
    if (isManagedSlave(entry)) this.start(state, entry)
    if (entry.config.role === 'master') for (const slave of this.managedSlaves(state)) this.start(state, slave)
  }

  /** Feeds a managed slave from its project's master (all collections, and the heartbeat for lag). */
  start(state: ProjectState, slave: ReplicaEntry): void {
    const master = masterOf(state)
    if (!master?.connected || !slave.connected || slave.fenced) return
    const config = {
      name: managedFeedName(state.name, slave.config.name),
      source: master.label,
      target: slave.label,
      mode: 'cdc' as const,
      collections: ['*'],
      alsoCarry: [HEARTBEAT_COLLECTION],
      origin: master.label,
    }
    this.ruleSet.startFeed(slave.label, config, master.dialect, slave.dialect, this.intervalMs)
  }

  async stop(state: ProjectState, slave: ReplicaEntry, dropCapture: boolean): Promise<void> {
    await this.ruleSet.stopFeed(slave.label)
    const master = masterOf(state)
    const capture = master?.dialect.capture
    if (!dropCapture || !capture) return
    await capture
      .drop(managedFeedName(state.name, slave.config.name))
      .catch((error: unknown) => this.host.report(error))
  }

  /** After a change of master: managed slaves are fed from the new one, and rules follow it. */
  async followNewMaster(state: ProjectState, previous: Dialect | null): Promise<void> {
    for (const slave of this.managedSlaves(state)) if (!slave.fenced) this.start(state, slave)
    await this.ruleSet.followNewMaster(state.name, previous)
  }
}

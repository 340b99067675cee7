import { dialectDescriptor, ReplicatorError } from '@mostajs/replicator-core'
import type { RuleSet } from '@mostajs/replicator-cdc'
import { promote } from '@mostajs/replicator-failover'
import { resolveEnvReferences } from '@mostajs/replicator-persistence'
import { automaticFailoverCandidate } from './auto-failover.js'
import type { ManagerHost } from './manager-host.js'
import type { ResolvedOptions } from './options.js'
import { outsideChange, splitBrainError } from './outside-changes.js'
import { liveNativeSlaves, masterOf, requireReplica, type ProjectState } from './project-state.js'
import type { Topology } from './topology.js'
import type { PromotionResult } from './types.js'

/** Changes of master: promotion on request, switchover, automatic failover, and following changes made outside. */
export class Promotions {
  constructor(
    private readonly host: ManagerHost,
    private readonly options: ResolvedOptions,
    private readonly topology: Topology,
    private readonly ruleSet: RuleSet,
  ) {}

  /**
   * Promotes a slave to master (see `promote` of `@mostajs/replicator-failover`). Refuses with
   * LAG_TOO_HIGH when its measured lag exceeds its tolerance or is unknown, unless `force`.
   * The old master is fenced: made read-only when reachable, and services resolved from it
   * fail with FENCED. Other native slaves are re-pointed; managed slaves and rules follow.
   */
  async promoteToMaster(project: string, name: string, options: { force?: boolean } = {}): Promise<PromotionResult> {
    const state = this.topology.requireProject(project)
    const candidate = requireReplica(state, name)
    if (candidate.config.role !== 'slave' || candidate.fenced)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `${project}/${name} is ${candidate.fenced ? 'fenced' : 'the master'}; only a slave can be promoted.`,
        { details: { project, name } },
      )
    if (!candidate.connected)
      throw new ReplicatorError(
        'CONNECTION_FAILED',
        `${project}/${name} is not connected (${candidate.lastError ?? 'unreachable'}); it cannot be promoted.`,
      )
    if (state.promoting)
      throw new ReplicatorError('CONFIG_INVALID', `A promotion of project "${project}" is already running.`)
    if (this.topology.shared) await this.topology.shared.confirm(project) // never promote on a view the store did not just confirm
    const stored = this.topology.shared?.current(project)
    if (stored && stored.epoch > state.epoch)
      throw new ReplicatorError(
        'FENCED',
        `Project "${project}" was promoted by another process (epoch ${stored.epoch}, master ${stored.master}); this process follows it and does not promote on a stale view.`,
        { details: { project, epoch: stored.epoch } },
      )
    state.promoting = true
    try {
      const previous = masterOf(state)
      const outcome = await promote({
        candidate: {
          ...candidate,
          lagToleranceMs: candidate.config.lagTolerance,
          replication: candidate.config.replication ?? 'native',
        },
        previous,
        force: options.force === true,
        heartbeatId: this.options.heartbeatId,
        catchUpTimeoutMs: this.options.catchUpTimeoutMs,
        measure: async () => {
          await state.lag.measureNow()
          return {
            lagMs: candidate.lagMs,
            appliedSequence: candidate.appliedSequence,
            latestSequence: state.lag.latest?.sequence,
          }
        },
        nextHeartbeatSequence: () => state.lag.nextSequence(),
        drainManaged: () => this.ruleSet.drainFeed(candidate.label),
        beforeSwitch: async () => {
          // Managed slaves were fed from the old master: stop them (and free its capture).
          for (const slave of this.topology.feeds.managedSlaves(state))
            await this.topology.feeds.stop(state, slave, true)
          if (previous) this.topology.demote(previous)
        },
        switchRoles: () => {
          this.topology.crown(candidate)
          state.epoch++
        },
        followers: () => ({
          replicas: liveNativeSlaves(state)
            .filter((entry) => entry !== candidate)
            .map((entry) => ({ name: entry.config.name, dialect: entry.dialect })),
          primaryUri: resolveEnvReferences(candidate.config.uri, `${project}/${name}.uri`),
        }),
        afterSwitch: () => this.topology.feeds.followNewMaster(state, previous?.connected ? previous.dialect : null),
      })
      const result: PromotionResult = {
        project,
        promoted: name,
        previousMaster: previous?.config.name ?? null,
        epoch: state.epoch,
        ...outcome,
      }
      if (this.topology.shared && !(await this.topology.shared.publish(project, { master: name, epoch: state.epoch })))
        this.host.report(
          new ReplicatorError(
            'FENCED',
            `Project "${project}": another process changed the shared topology while ${name} was being promoted here; the stored topology is followed.`,
            { details: { project, promoted: name } },
          ),
        )
      this.host.emit('replica.promoted', result)
      this.host.changed()
      return result
    } finally {
      state.promoting = false
    }
  }

  /**
   * Automatic failover (opt-in): the master stayed unreachable; if this process coordinates
   * the project, no slave still receives from the master, and one qualifies, it is promoted.
   */
  masterFailed(state: ProjectState): void {
    const auto = this.options.autoFailover
    if (!auto || state.promoting || state.failoverCheck) return
    const failOver = async () => {
      const candidate = await automaticFailoverCandidate(state, auto, this.topology.shared)
      if (!candidate) return
      const result = await this.promoteToMaster(state.name, candidate.config.name)
      this.host.emit('failover.automatic', result)
    }
    state.failoverCheck = failOver()
      .catch((error: unknown) => this.host.report(error))
      .finally(() => (state.failoverCheck = undefined))
  }

  /**
   * Follow mode: a slave promoted outside the manager (Patroni, a managed database, an
   * operator) while the master is gone or read-only becomes the master here, and the change is
   * published for the other processes. Two writable primaries are reported (once), not resolved.
   */
  rolesReported(state: ProjectState): void {
    if (state.promoting) return
    const change = outsideChange(state)
    state.outsideSince = change.kind === 'follow' ? (state.outsideSince ?? Date.now()) : undefined
    // with a shared store, the slave may be under promotion by another process of this
    // topology: follow it as an outside change only if the store did not name it meanwhile
    const graceMs = this.topology.shared ? Math.max(2000, 2 * Math.min(this.options.maxViewAgeMs, 5000)) : 0
    if (change.kind === 'follow' && Date.now() - state.outsideSince! >= graceMs) {
      state.outsideSince = undefined
      this.topology.followMaster(state, change.next, state.epoch + 1, true)
      const published = { master: change.next.config.name, epoch: state.epoch }
      this.topology.shared?.publish(state.name, published).catch((error: unknown) => this.host.report(error))
    } else if (change.kind === 'conflict' && !state.splitBrainReported)
      this.host.report(splitBrainError(state.name, change.slaves))
    state.splitBrainReported = change.kind === 'conflict'
  }

  /**
   * A planned change of master, with nothing lost: the current master must be reachable (it is
   * fenced, and the candidate must apply its final heartbeat, else LAG_TOO_HIGH and the old
   * master stays writable). Where the database allows it (MariaDB/MySQL with GTID), the old
   * master then replicates from the new one and serves reads again as a slave; a PostgreSQL
   * old master stays fenced (it needs pg_rewind or a new base backup to follow).
   */
  async switchover(project: string, name: string): Promise<PromotionResult> {
    const state = this.topology.requireProject(project)
    const previous = masterOf(state)
    if (!previous?.connected || !previous.healthy)
      throw new ReplicatorError(
        'CONNECTION_FAILED',
        `Project "${project}": a switchover needs its master reachable (a planned change); use promoteToMaster for a failover.`,
        { details: { project } },
      )
    const result = await this.promoteToMaster(project, name)
    if (dialectDescriptor(previous.config.dialect)?.oldMasterRejoins && previous.dialect.replication) {
      const candidate = requireReplica(state, name)
      await previous.dialect.replication.replicateFrom(
        resolveEnvReferences(candidate.config.uri, `${project}/${name}.uri`),
      )
      // a new entry: services resolved from the old one stay fenced
      const config = { ...previous.config, role: 'slave' as const, replication: 'native' as const }
      await this.topology.removeReplica(project, previous.config.name)
      await this.topology.addReplica(project, config)
    }
    return result
  }
}

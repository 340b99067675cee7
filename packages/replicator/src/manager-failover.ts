import { ReplicatorError } from '@mostajs/replicator-core'
import { promote } from '@mostajs/replicator-failover'
import { resolveEnvReferences } from '@mostajs/replicator-persistence'
import { automaticFailoverCandidate } from './auto-failover.js'
import { ManagerWithRules } from './manager-rules.js'
import { outsideChange, splitBrainError } from './outside-changes.js'
import { liveNativeSlaves, masterOf, requireReplica, type ProjectState } from './topology.js'
import type { PromotionResult } from './types.js'

/** The manager's promotions: on request, automatic failover, switchover, and following changes made outside. */
export class ManagerWithFailover extends ManagerWithRules {
  // ---------------------------------------------------------------- promotion

  /**
   * Promotes a slave to master (see `promote` of `@mostajs/replicator-failover`). Refuses with
   * LAG_TOO_HIGH when its measured lag exceeds its tolerance or is unknown, unless `force`.
   * The old master is fenced: made read-only when reachable, and services resolved from it
   * fail with FENCED. Other native slaves are re-pointed; managed slaves and rules follow.
   */
  async promoteToMaster(project: string, name: string, options: { force?: boolean } = {}): Promise<PromotionResult> {
    const state = this.requireProject(project)
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
    if (this.shared) await this.shared.confirm(project) // never promote on a view the store did not just confirm
    const stored = this.shared?.current(project)
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
        drainManaged: () => this.rules.drainFeed(candidate.label),
        beforeSwitch: async () => {
          // Managed slaves were fed from the old master: stop them (and free its capture).
          for (const slave of this.managedSlaves(state)) await this.stopFeed(state, slave, true)
          if (previous) this.demote(previous)
        },
        switchRoles: () => {
          this.crown(candidate)
          state.epoch++
        },
        followers: () => ({
          replicas: liveNativeSlaves(state)
            .filter((entry) => entry !== candidate)
            .map((entry) => ({ name: entry.config.name, dialect: entry.dialect })),
          primaryUri: resolveEnvReferences(candidate.config.uri, `${project}/${name}.uri`),
        }),
        afterSwitch: () => this.followedByFeedsAndRules(state, previous?.connected ? previous.dialect : null),
      })
      const result: PromotionResult = {
        project,
        promoted: name,
        previousMaster: previous?.config.name ?? null,
        epoch: state.epoch,
        ...outcome,
      }
      if (this.shared && !(await this.shared.publish(project, { master: name, epoch: state.epoch })))
        this.report(
          new ReplicatorError(
            'FENCED',
            `Project "${project}": another process changed the shared topology while ${name} was being promoted here; the stored topology is followed.`,
            { details: { project, promoted: name } },
          ),
        )
      this.emit('replica.promoted', result)
      this.schedulePersist()
      return result
    } finally {
      state.promoting = false
    }
  }

  /**
   * Automatic failover (opt-in): the master stayed unreachable; if this process coordinates
   * the project, no slave still receives from the master, and one qualifies, it is promoted.
   */
  protected override masterFailed(state: ProjectState): void {
    const auto = this.options.autoFailover
    if (!auto || state.promoting || state.failoverCheck) return
    const failOver = async () => {
      const candidate = await automaticFailoverCandidate(state, auto, this.shared)
      if (!candidate) return
      const result = await this.promoteToMaster(state.name, candidate.config.name)
      this.emit('failover.automatic', result)
    }
    state.failoverCheck = failOver()
      .catch((error: unknown) => this.report(error))
      .finally(() => (state.failoverCheck = undefined))
  }

  /**
   * Follow mode: a slave promoted outside the manager (Patroni, a managed database, an
   * operator) while the master is gone or read-only becomes the master here, and the change is
   * published for the other processes. Two writable primaries are reported (once), not resolved.
   */
  protected override rolesReported(state: ProjectState): void {
    if (state.promoting) return
    const change = outsideChange(state)
    state.outsideSince = change.kind === 'follow' ? (state.outsideSince ?? Date.now()) : undefined
    // with a shared store, the slave may be under promotion by another process of this
    // topology: follow it as an outside change only if the store did not name it meanwhile
    const graceMs = this.shared ? Math.max(2000, 2 * Math.min(this.options.maxViewAgeMs, 5000)) : 0
    if (change.kind === 'follow' && Date.now() - state.outsideSince! >= graceMs) {
      state.outsideSince = undefined
      this.followMaster(state, change.next, state.epoch + 1, true)
      const published = { master: change.next.config.name, epoch: state.epoch }
      this.shared?.publish(state.name, published).catch((error: unknown) => this.report(error))
    } else if (change.kind === 'conflict' && !state.splitBrainReported)
      this.report(splitBrainError(state.name, change.slaves))
    state.splitBrainReported = change.kind === 'conflict'
  }
}

import { ReplicatorError, type EntityService } from '@mostajs/replicator-core'
import {
  assertStrategy,
  fallbackReason,
  isEligible,
  type FallbackReason,
  type ReadRoutingStrategy,
  type RouteOptions,
} from '@mostajs/replicator-routing'
import type { ManagerHost } from './manager-host.js'
import { masterOf, requireMaster, routingCandidateOf, type ProjectState, type ReplicaEntry } from './project-state.js'
import type { ReplicationSession } from './session.js'
import type { Topology } from './topology.js'
import type { PickedReplica, ResolveReadOptions, RoutingStatus } from './types.js'

/**
 * Where each read and write goes: the project's read strategy over its eligible slaves (in
 * memory, no I/O), the master as fallback (counted by reason), the session under way honoured.
 */
export class ReadRouting {
  constructor(
    private readonly host: ManagerHost,
    private readonly topology: Topology,
    /** The session `withSession` runs the current work under (undefined outside one). */
    private readonly sessions: { currentSession(project: string): ReplicationSession | undefined },
  ) {}

  /** Sets how reads are spread over the project's eligible slaves. */
  setReadRouting(project: string, strategy: ReadRoutingStrategy): void {
    assertStrategy(strategy)
    this.topology.requireProject(project).router.strategy = strategy
    this.host.changed()
  }

  getReadRouting(project: string): ReadRoutingStrategy {
    return this.topology.requireProject(project).router.strategy
  }

  /**
   * The EntityService of the replica that should serve a read: a healthy slave whose measured
   * lag is within its tolerance (and, with a session, that applied the session's writes),
   * else the master. Decides from memory: no I/O. Its writes fail with READ_ONLY (a write on
   * a slave would diverge from the master) unless `allowWrites`.
   */
  resolveReadService(project: string, options: ResolveReadOptions = {}): EntityService {
    const chosen = this.chooseReader(project, options)
    return options.allowWrites ? chosen.service : chosen.readService
  }

  /**
   * The replica resolveReadService would pick, for a client of your own (an ORM, a driver pool
   * keyed by replica name): its name, role, dialect name and masked URI, and its read service
   * (`service.dialect.query(sql)` runs raw reads there). Counted as a routed read.
   */
  pickReplica(project: string, options: Omit<ResolveReadOptions, 'allowWrites'> = {}): PickedReplica {
    const chosen = this.chooseReader(project, options)
    return {
      project,
      name: chosen.config.name,
      role: chosen.config.role,
      dialect: chosen.config.dialect,
      uri: chosen.dialect.maskedUri,
      service: chosen.readService,
    }
  }

  private chooseReader(project: string, given: ResolveReadOptions): ReplicaEntry {
    const state = this.topology.requireProject(project)
    if (given.consistency === 'strong') return this.fallBack(state, 'strong_consistency')
    const session = given.session ?? this.sessions.currentSession(project)
    const options = session ? { ...given, session } : given
    if (options.session && options.session.project !== project)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `This session belongs to project "${options.session.project}", not "${project}".`,
      )
    // the master, fenced and unconnected replicas come marked `excluded`
    state.candidates ??= [...state.replicas.values()].map(routingCandidateOf)
    const route = routeOf(options.session)
    const picked = state.router.pick(state.candidates, route)
    const chosen = picked ? state.replicas.get(picked)! : this.fallBack(state, fallbackReason(state.candidates, route))
    chosen.readsRouted++
    return chosen
  }

  /** The master, for a read no slave could serve; counted by reason. */
  private fallBack(state: ProjectState, reason: FallbackReason): ReplicaEntry {
    const master = requireMaster(state)
    state.masterFallbacks.set(reason, (state.masterFallbacks.get(reason) ?? 0) + 1)
    return master
  }

  /** How reads of a project are routed now: the strategy, the slaves eligible now, reads served so far. */
  getRoutingStatus(project: string): RoutingStatus {
    const state = this.topology.requireProject(project)
    const replicas = [...state.replicas.values()]
    return {
      project,
      strategy: state.router.strategy,
      master: masterOf(state)?.config.name ?? null,
      eligible: replicas.filter((entry) => isEligible(routingCandidateOf(entry))).map((entry) => entry.config.name),
      readsRouted: Object.fromEntries(replicas.map((entry) => [entry.config.name, entry.readsRouted])),
      masterFallbacks: Object.fromEntries(state.masterFallbacks),
    }
  }

  /** The EntityService of the project's master. Fails with FENCED once that master is demoted. */
  resolveWriteService(project: string): EntityService {
    const session = this.sessions.currentSession(project)
    return session ? session.write() : requireMaster(this.topology.requireProject(project)).service
  }
}

/** No condition on the slave (shared: a plain read allocates nothing for it). */
const ANY_SLAVE: RouteOptions = Object.freeze({})

/** The conditions a session puts on the slave that serves its reads. */
function routeOf(session: ReplicationSession | undefined): RouteOptions {
  if (!session || (session.minSequence === undefined && !session.minApplied.size)) return ANY_SLAVE
  const route: RouteOptions = {}
  if (session.minSequence !== undefined) route.minSequence = session.minSequence
  if (session.minApplied.size) route.minApplied = session.minApplied
  return route
}

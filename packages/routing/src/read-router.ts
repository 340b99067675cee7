import { ReplicatorError } from '@mostajs/replicator-core'

/** The strategies, in documentation order: the one list the type, validation and the tree file read. */
export const READ_ROUTING_STRATEGIES = ['round-robin', 'least-lag', 'random', 'weighted'] as const

/** How reads are spread over the eligible slaves of a project. */
export type ReadRoutingStrategy = (typeof READ_ROUTING_STRATEGIES)[number]

/** What routing knows of one slave: in-memory state kept fresh by the monitors (no I/O per call). */
export interface RoutingCandidate {
  name: string
  /** Passed its health checks. */
  healthy: boolean
  /** Measured lag in ms; null while no heartbeat has arrived. */
  lagMs: number | null
  /** Largest lag (ms) at which it may serve reads. */
  lagToleranceMs: number
  /** Share for `weighted` (default 1; 0 never serves). */
  weight: number
  /** Highest master heartbeat sequence it has applied; null when unknown. */
  appliedSequence: bigint | null
  /** Highest heartbeat sequence applied per writer (other instances' managers), when measured. */
  appliedBy?: ReadonlyMap<string, bigint> | null
  /** Fenced or otherwise excluded replicas never serve. */
  excluded?: boolean
}

/** Extra conditions of one read. */
export interface RouteOptions {
  /** Only slaves that applied at least this master heartbeat sequence (read-your-writes). */
  minSequence?: bigint
  /** Only slaves that applied, for each writer given, at least its sequence (a token from other instances). */
  minApplied?: ReadonlyMap<string, bigint>
}

/** True when a slave may serve a read now. */
export function isEligible(candidate: RoutingCandidate, options: RouteOptions = {}): boolean {
  if (
    candidate.excluded ||
    !candidate.healthy ||
    candidate.lagMs === null ||
    candidate.lagMs > candidate.lagToleranceMs
  )
    return false
  if (
    options.minSequence !== undefined &&
    (candidate.appliedSequence === null || candidate.appliedSequence < options.minSequence)
  )
    return false
  if (options.minApplied)
    for (const [writer, sequence] of options.minApplied) {
      const applied = candidate.appliedBy?.get(writer)
      if (applied === undefined || applied < sequence) return false
    }
  return true
}

/** Why a read went to the master instead of a slave. */
export type FallbackReason =
  'strong_consistency' | 'no_slave' | 'slaves_down' | 'slaves_lagging' | 'session_not_applied' | 'no_weight'

/**
 * Why no slave could serve a read (`pick` returned null): the first condition that left none,
 * in the order a slave is checked (present, up, within its lag tolerance, caught up with the
 * session, given a weight).
 */
export function fallbackReason(candidates: readonly RoutingCandidate[], options: RouteOptions = {}): FallbackReason {
  const slaves = candidates.filter((candidate) => !candidate.excluded)
  if (!slaves.length) return 'no_slave'
  const up = slaves.filter((candidate) => candidate.healthy)
  if (!up.length) return 'slaves_down'
  if (!up.some((candidate) => isEligible(candidate))) return 'slaves_lagging'
  if (!up.some((candidate) => isEligible(candidate, options))) return 'session_not_applied'
  return 'no_weight'
}

/** Throws CONFIG_INVALID for an unknown strategy name. */
export function assertStrategy(strategy: string): asserts strategy is ReadRoutingStrategy {
  if (!READ_ROUTING_STRATEGIES.includes(strategy as ReadRoutingStrategy)) {
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `Unknown read routing "${strategy}". Use one of: ${READ_ROUTING_STRATEGIES.join(', ')}.`,
    )
  }
}

/** No condition on the slave (shared, so that a plain pick allocates nothing). */
const NO_CONDITION: RouteOptions = Object.freeze({})

/**
 * Picks the slave that serves a read, or null when none is eligible (the read then goes to
 * the master). Decides from memory only.
 *
 * @example
 * const router = new ReadRouter('least-lag')
 * router.pick([{ name: 's1', healthy: true, lagMs: 40, lagToleranceMs: 500, weight: 1, appliedSequence: 12n }])
 */
export class ReadRouter {
  private rotation = 0
  private strategyName: ReadRoutingStrategy

  constructor(
    strategy: ReadRoutingStrategy = 'round-robin',
    private readonly random: () => number = Math.random,
  ) {
    assertStrategy(strategy)
    this.strategyName = strategy
  }

  get strategy(): ReadRoutingStrategy {
    return this.strategyName
  }

  set strategy(strategy: ReadRoutingStrategy) {
    assertStrategy(strategy)
    this.strategyName = strategy
  }

  pick(candidates: readonly RoutingCandidate[], options: RouteOptions = NO_CONDITION): string | null {
    // Runs on every routed read: each strategy counts what it needs, then walks to the chosen
    // one, allocating nothing (indexed loops: no iterator to close on the hot path).
    switch (this.strategyName) {
      case 'round-robin': {
        const eligible = countEligible(candidates, options)
        return eligible === 0 ? null : nthEligible(candidates, options, this.rotation++ % eligible).name
      }
      case 'random': {
        const eligible = countEligible(candidates, options)
        return eligible === 0 ? null : nthEligible(candidates, options, Math.floor(this.random() * eligible)).name
      }
      case 'least-lag': {
        let best = Infinity
        let freshest = 0
        for (let i = 0; i < candidates.length; i++) {
          const candidate = candidates[i]!
          if (!isEligible(candidate, options)) continue
          if (candidate.lagMs! < best) {
            best = candidate.lagMs!
            freshest = 0
          }
          if (candidate.lagMs === best) freshest++
        }
        if (freshest === 0) return null
        // ties share the load
        return nthEligible(candidates, options, this.rotation++ % freshest, best).name
      }
      case 'weighted': {
        let total = 0
        for (let i = 0; i < candidates.length; i++)
          if (isEligible(candidates[i]!, options)) total += Math.max(0, candidates[i]!.weight)
        if (total <= 0) return null
        let point = this.random() * total
        let last: RoutingCandidate | undefined
        for (let i = 0; i < candidates.length; i++) {
          const candidate = candidates[i]!
          if (!isEligible(candidate, options)) continue
          point -= Math.max(0, candidate.weight)
          if (point < 0) return candidate.name
          last = candidate
        }
        return last!.name
      }
    }
  }
}

function countEligible(candidates: readonly RoutingCandidate[], options: RouteOptions): number {
  let eligible = 0
  for (let i = 0; i < candidates.length; i++) if (isEligible(candidates[i]!, options)) eligible++
  return eligible
}

/** The `index`-th eligible candidate (0-based), in list order; only those at `lagMs` when given. */
function nthEligible(
  candidates: readonly RoutingCandidate[],
  options: RouteOptions,
  index: number,
  lagMs?: number,
): RoutingCandidate {
  let seen = 0
  for (let i = 0; i < candidates.length; i++) {
    const candidate = candidates[i]!
    if (isEligible(candidate, options) && (lagMs === undefined || candidate.lagMs === lagMs) && seen++ === index)
      return candidate
  }
  throw new Error(`nthEligible: no eligible candidate at index ${index}`) // unreachable: index < the count
}

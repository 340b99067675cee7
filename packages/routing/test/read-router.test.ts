import { describe, expect, it } from 'vitest'
import { fallbackReason, isEligible, ReadRouter, type RoutingCandidate } from '../src/index.js'

// Routing is pure logic over in-memory state: plain objects stand for measured slaves.
const slave = (name: string, overrides: Partial<RoutingCandidate> = {}): RoutingCandidate => ({
  name,
  healthy: true,
  lagMs: 10,
  lagToleranceMs: 1000,
  weight: 1,
  appliedSequence: 100n,
  ...overrides,
})

function tally(router: ReadRouter, candidates: RoutingCandidate[], picks: number): Record<string, number> {
  const counts: Record<string, number> = {}
  for (let i = 0; i < picks; i++) {
    const name = router.pick(candidates) ?? 'master'
    counts[name] = (counts[name] ?? 0) + 1
  }
  return counts
}

describe('ReadRouter', () => {
  it('round-robin rotates exactly over three slaves', () => {
    const router = new ReadRouter('round-robin')
    const slaves = [slave('a'), slave('b'), slave('c')]
    expect(Array.from({ length: 9 }, () => router.pick(slaves))).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c'])
  })

  it('drops unhealthy, fenced, unmeasured and too-lagging slaves; none left → master (null)', () => {
    const router = new ReadRouter('round-robin')
    const slaves = [
      slave('sick', { healthy: false }),
      slave('unknown', { lagMs: null }),
      slave('slow', { lagMs: 1500 }),
      slave('fenced', { excluded: true }),
      slave('ok'),
    ]
    expect(tally(router, slaves, 30)).toEqual({ ok: 30 })
    expect(router.pick(slaves.slice(0, 4))).toBeNull()
    expect(isEligible(slave('edge', { lagMs: 1000 }))).toBe(true)
    expect(isEligible(slave('zero', { lagMs: 0, lagToleranceMs: 0 }))).toBe(true)
  })

  it('least-lag picks the freshest and shares ties', () => {
    const router = new ReadRouter('least-lag')
    expect(tally(router, [slave('a', { lagMs: 80 }), slave('b', { lagMs: 5 }), slave('c', { lagMs: 40 })], 10)).toEqual(
      { b: 10 },
    )
    expect(tally(router, [slave('a', { lagMs: 0 }), slave('b', { lagMs: 0 }), slave('c', { lagMs: 9 })], 10)).toEqual({
      a: 5,
      b: 5,
    })
  })

  it('weighted follows the weights within tolerance; weight 0 never serves', () => {
    const router = new ReadRouter('weighted')
    const counts = tally(
      router,
      [slave('a', { weight: 1 }), slave('b', { weight: 3 }), slave('never', { weight: 0 })],
      40_000,
    )
    expect(counts.never).toBeUndefined()
    expect(counts.b! / 40_000).toBeGreaterThan(0.73)
    expect(counts.b! / 40_000).toBeLessThan(0.77)
  })

  it('random spreads reads over every eligible slave', () => {
    const counts = tally(new ReadRouter('random'), [slave('a'), slave('b'), slave('c')], 30_000)
    for (const name of ['a', 'b', 'c']) expect(counts[name]! / 30_000).toBeGreaterThan(0.3)
  })

  it('read-your-writes: only slaves that applied the session position', () => {
    const router = new ReadRouter('round-robin')
    const slaves = [
      slave('behind', { appliedSequence: 41n }),
      slave('there', { appliedSequence: 42n }),
      slave('blank', { appliedSequence: null }),
    ]
    expect(Array.from({ length: 4 }, () => router.pick(slaves, { minSequence: 42n }))).toEqual([
      'there',
      'there',
      'there',
      'there',
    ])
    expect(router.pick(slaves, { minSequence: 43n })).toBeNull()
  })

  it('picks exactly what filtering the eligible slaves first would pick, for every strategy', () => {
    // The router walks the list without building the eligible array; this is the plain
    // definition it must match, pick for pick, over mixed lists (ineligible ones in between).
    const reference = (strategy: string, eligible: RoutingCandidate[], rotation: number, draw: number) => {
      if (strategy === 'round-robin') return eligible[rotation % eligible.length]!.name
      if (strategy === 'random') return eligible[Math.floor(draw * eligible.length)]!.name
      if (strategy === 'least-lag') {
        const best = Math.min(...eligible.map((candidate) => candidate.lagMs!))
        const freshest = eligible.filter((candidate) => candidate.lagMs === best)
        return freshest[rotation % freshest.length]!.name
      }
      const total = eligible.reduce((sum, candidate) => sum + Math.max(0, candidate.weight), 0)
      if (total <= 0) return null
      let point = draw * total
      for (const candidate of eligible) if ((point -= Math.max(0, candidate.weight)) < 0) return candidate.name
      return eligible[eligible.length - 1]!.name
    }
    let seed = 7
    const next = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646
    for (const strategy of ['round-robin', 'random', 'least-lag', 'weighted'] as const) {
      let draw = 0
      const router = new ReadRouter(strategy, () => draw)
      let rotation = 0
      for (let round = 0; round < 300; round++) {
        const candidates = Array.from({ length: 1 + Math.floor(next() * 6) }, (_, i) =>
          slave(`s${i}`, {
            healthy: next() > 0.2,
            lagMs: next() > 0.1 ? Math.floor(next() * 4) * 500 : null,
            weight: Math.floor(next() * 3),
            excluded: next() < 0.15,
          }),
        )
        draw = next()
        const eligible = candidates.filter((candidate) => isEligible(candidate))
        const expected = eligible.length ? reference(strategy, eligible, rotation, draw) : null
        if (eligible.length && strategy !== 'random' && strategy !== 'weighted') rotation++
        expect(router.pick(candidates), `${strategy}, round ${round}`).toBe(expected)
      }
    }
  })

  it('rejects an unknown strategy', () => {
    expect(() => new ReadRouter('fastest' as never)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }))
    const router = new ReadRouter()
    expect(() => {
      router.strategy = 'nope' as never
    }).toThrow(/round-robin, least-lag, random, weighted/)
  })
})

describe('fallbackReason', () => {
  it('names the first condition that left no slave for a read', () => {
    expect(fallbackReason([])).toBe('no_slave')
    expect(fallbackReason([slave('a', { excluded: true })])).toBe('no_slave')
    expect(fallbackReason([slave('a', { healthy: false })])).toBe('slaves_down')
    expect(fallbackReason([slave('a', { lagMs: 5000 }), slave('b', { lagMs: null })])).toBe('slaves_lagging')
    expect(fallbackReason([slave('a', { appliedSequence: 5n })], { minSequence: 6n })).toBe('session_not_applied')
    expect(fallbackReason([slave('a', { weight: 0 })])).toBe('no_weight')
  })
})

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

import { describe, expect, it } from 'vitest'
import { measureLag } from '../src/lag.js'

// Lag arithmetic only (no database): heartbeats as a master and a replica would report them.
describe('measureLag', () => {
  const latest = { sequence: 10n, at: new Date('2026-01-01T00:00:10.000Z'), confirmedAtMs: 1_000_000 }

  it('is null before any heartbeat arrived', () => {
    expect(measureLag(latest, null, 1_000_000)).toBeNull()
    expect(measureLag(undefined, { sequence: 1n, at: new Date() }, 0)).toBeNull()
  })

  it('is 0 once the replica applied the latest heartbeat', () => {
    expect(measureLag(latest, { sequence: 10n, at: latest.at }, 1_000_500)).toBe(0)
  })

  it('grows with time while the replica stays behind, in master clock terms', () => {
    const applied = { sequence: 8n, at: new Date('2026-01-01T00:00:09.500Z') }
    expect(measureLag(latest, applied, 1_000_000)).toBe(500)
    expect(measureLag(latest, applied, 1_000_300)).toBe(800)
    expect(measureLag(latest, applied, 1_002_000)).toBe(2500)
  })
})

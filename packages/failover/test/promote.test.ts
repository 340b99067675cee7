import '@mostajs/replicator-dialect-postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicatorError, type Dialect } from '@mostajs/replicator-core'
import { isBehind, promote, type PromotionContext } from '@mostajs/replicator-failover'
import { measureLag, type MasterHeartbeat } from '@mostajs/replicator-routing'
import { startPostgres, startPostgresStandby, type RunningPostgres } from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('postgres')
const HEARTBEAT_ID = 'failover-test'

describe('isBehind (the promotion gate)', () => {
  it('unknown or excessive lag is behind; lagTolerance 0 also needs the latest heartbeat applied', () => {
    expect(isBehind({ lagMs: null, appliedSequence: null, latestSequence: 5n }, 1000)).toBe(true)
    expect(isBehind({ lagMs: 1500, appliedSequence: 4n, latestSequence: 5n }, 1000)).toBe(true)
    expect(isBehind({ lagMs: 200, appliedSequence: 4n, latestSequence: 5n }, 1000)).toBe(false)
    expect(isBehind({ lagMs: 0, appliedSequence: 4n, latestSequence: 5n }, 0)).toBe(true)
    expect(isBehind({ lagMs: 0, appliedSequence: 5n, latestSequence: 5n }, 0)).toBe(false)
  })
})

describe.skipIf(!available)(`promote() on a real PostgreSQL master and native standby${skipNote}`, () => {
  let master: RunningPostgres
  let standby: RunningPostgres
  let primary: Dialect
  let replica: Dialect
  let sequence = 0n
  let latest: MasterHeartbeat | undefined

  beforeAll(async () => {
    master = await startPostgres()
    const masterUri = await master.createDatabase('shop')
    standby = await startPostgresStandby(master)
    const standbyUri = new URL(masterUri)
    standbyUri.port = String(standby.port)
    primary = await connectDialect({ dialect: 'postgres', uri: masterUri })
    replica = await connectDialect({ dialect: 'postgres', uri: standbyUri.toString() })
    await primary.ensureCollection({ name: 'orders', columns: [{ name: 'id', type: 'integer' }], primaryKey: ['id'] })
  })
  afterAll(async () => {
    await primary?.close()
    await replica?.close()
    await standby?.stop()
    await master?.stop()
  })

  /** A context over the two real servers that records the hooks it is called with. */
  function context(overrides: Partial<PromotionContext>, calls: string[]): PromotionContext {
    return {
      candidate: {
        label: 'shop/standby',
        dialect: replica,
        connected: true,
        lagToleranceMs: 1000,
        replication: 'native',
      },
      previous: { label: 'shop/primary', dialect: primary, connected: true },
      force: false,
      heartbeatId: HEARTBEAT_ID,
      catchUpTimeoutMs: 10_000,
      async measure() {
        const written = await primary.heartbeat!.write(++sequence, HEARTBEAT_ID)
        latest = { ...written, confirmedAtMs: Date.now() }
        const applied = await replica.heartbeat!.read(HEARTBEAT_ID)
        return {
          lagMs: measureLag(latest, applied, Date.now()),
          appliedSequence: applied?.sequence ?? null,
          latestSequence: latest.sequence,
        }
      },
      nextHeartbeatSequence: () => ++sequence,
      beforeSwitch: async () => void calls.push('beforeSwitch'),
      switchRoles: () => void calls.push('switchRoles'),
      followers: () => ({ replicas: [], primaryUri: 'unused' }),
      afterSwitch: async () => void calls.push('afterSwitch'),
      ...overrides,
    }
  }

  it('the gate refuses a candidate of unknown lag and leaves the master as it was', async () => {
    const calls: string[] = []
    const unknownLag = context(
      { measure: async () => ({ lagMs: null, appliedSequence: null, latestSequence: undefined }) },
      calls,
    )
    const refused = await expectReplicatorError(promote(unknownLag), 'LAG_TOO_HIGH')
    expect(refused.message).toContain('unknown lag')
    expect(calls).toEqual([])
    await primary.upsertMany('orders', [{ id: 1 }]) // still writable
  })

  it('fences the master (read-only, final heartbeat applied by the standby), promotes, then calls the hooks in order', async () => {
    const calls: string[] = []
    await primary.upsertMany('orders', [{ id: 2 }])
    // the standby has applied a heartbeat (under load it may still be replaying the first one)
    await primary.heartbeat!.write(++sequence, HEARTBEAT_ID)
    await waitFor(
      async () => (await replica.heartbeat!.read(HEARTBEAT_ID)) !== null,
      10_000,
      'a heartbeat on the standby',
    )
    const outcome = await promote(context({}, calls))
    expect(outcome).toMatchObject({ previousMasterReadOnly: true, forced: false, possibleDataLoss: null })
    expect(calls).toEqual(['beforeSwitch', 'switchRoles', 'afterSwitch'])
    // the old master refuses writes; the promoted standby takes them and has every committed row
    const refused = await primary.upsertMany('orders', [{ id: 3 }]).catch((error: unknown) => error)
    expect(ReplicatorError.isInstance(refused) || refused instanceof Error).toBe(true)
    await replica.upsertMany('orders', [{ id: 4 }])
    expect((await replica.find('orders', {}, { sort: { id: 1 } })).map((row) => row.id)).toEqual([1, 2, 4])
  })
})

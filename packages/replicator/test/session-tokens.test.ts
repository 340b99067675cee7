import '@mostajs/replicator-dialect-postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type Dialect, type EntitySchema } from '@mostajs/replicator'
import { startPostgresPair, type PostgresPair } from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

// Read-your-writes across instances: a token made by one manager after a write, carried by the
// client (a cookie, a header) to another manager, keeps that one's reads off a standby that has
// not replayed the write. Two managers stand for two application instances.

const Note: EntitySchema = { name: 'Note', collection: 'notes', fields: { text: { type: 'string' } } }
const { available, skipNote } = privateServer('postgres')

describe.skipIf(!available)(`read-your-writes tokens between instances${skipNote}`, () => {
  let pair: PostgresPair
  let onStandby: Dialect
  const instances: ReplicationManager[] = []

  beforeAll(async () => {
    pair = await startPostgresPair('shop')
    const { masterUri, standbyUri } = pair
    onStandby = pair.onStandby
    for (const name of ['instance-a', 'instance-b']) {
      const rm = new ReplicationManager(null, {
        heartbeatIntervalMs: 50,
        healthCheckIntervalMs: 100,
        heartbeatId: name,
      })
      await rm.addReplica(
        'shop',
        { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri, schemaStrategy: 'create' },
        [Note],
      )
      await rm.addReplica('shop', {
        name: 'standby',
        role: 'slave',
        dialect: 'postgres',
        uri: standbyUri,
        lagTolerance: 10_000,
      })
      instances.push(rm)
    }
    for (const rm of instances)
      await waitFor(() => rm.getRoutingStatus('shop').eligible.includes('standby'), 15_000, 'the standby eligible')
  })

  afterAll(async () => {
    for (const rm of instances) await rm.disconnectAll()
    await pair?.stop()
  })

  it('instance B, given the token of a write made on instance A, reads it while the standby lags; the standby serves it once it replayed it', async () => {
    const [a, b] = instances as [ReplicationManager, ReplicationManager]
    await onStandby.query('SELECT pg_wal_replay_pause()')
    let token = ''
    let id = ''
    try {
      await a.withSession('shop', async () => {
        id = String((await a.resolveWriteService('shop').create('Note', { text: 'written on A' })).id)
        token = a.currentSession('shop')!.token()
      })
      expect(token).toMatch(/^rw1\./)
      // without the token, B reads the lagging standby: the note is not there
      expect(await b.resolveReadService('shop').findById('Note', id)).toBeNull()
      // with it, B reads from the master
      const before = b.getRoutingStatus('shop').masterFallbacks.session_not_applied ?? 0
      const read = await b.withSession('shop', () => b.resolveReadService('shop').findById('Note', id), { token })
      expect(read).toMatchObject({ text: 'written on A' })
      expect(b.getRoutingStatus('shop').masterFallbacks.session_not_applied).toBe(before + 1)
    } finally {
      await onStandby.query('SELECT pg_wal_replay_resume()')
    }
    // once the standby replayed A's heartbeat past the write, it serves the token's reads again
    await waitFor(
      async () => {
        const routed = b.getRoutingStatus('shop').readsRouted.standby ?? 0
        const found = await b.withSession('shop', () => b.resolveReadService('shop').findById('Note', id), { token })
        return found !== null && (b.getRoutingStatus('shop').readsRouted.standby ?? 0) === routed + 1
      },
      10_000,
      'the standby serving the token after replaying the write',
    )
    // a token travels on: B's session token keeps A's position
    const relayed = b.withSession('shop', () => b.currentSession('shop')!.token(), { token })
    const again = a.session('shop', relayed)
    expect(again.minSequence).toBeDefined()
  })

  it('a malformed token, or one of another project, is refused with CONFIG_INVALID', async () => {
    const [a] = instances as [ReplicationManager]
    await expectReplicatorError(
      Promise.resolve().then(() => a.session('shop', 'not-a-token')),
      'CONFIG_INVALID',
    )
    const other = `rw1.${Buffer.from(JSON.stringify({ p: 'elsewhere', w: [] })).toString('base64url')}`
    await expectReplicatorError(
      Promise.resolve().then(() => a.session('shop', other)),
      'CONFIG_INVALID',
    )
    const forged = `rw1.${Buffer.from(JSON.stringify({ p: 'shop', w: [['x', '1e9']] })).toString('base64url')}`
    await expectReplicatorError(
      Promise.resolve().then(() => a.session('shop', forged)),
      'CONFIG_INVALID',
    )
  })
})

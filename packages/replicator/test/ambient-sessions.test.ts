import '@mostajs/replicator-dialect-sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type EntitySchema } from '@mostajs/replicator'
import { testBackends, waitFor } from '@mostajs/replicator-testkit/vitest'

// withSession: a request handler that resolves services as usual reads its own writes, because
// the manager finds the request's session itself (AsyncLocalStorage).

const backends = testBackends()
const Note: EntitySchema = { name: 'Note', collection: 'notes', fields: { text: { type: 'string' } } }

describe('sessions of the work under way (withSession)', () => {
  const rm = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
  const cleanups: Array<() => Promise<void>> = []
  afterAll(async () => {
    await rm.disconnectAll()
    for (const cleanup of cleanups) await cleanup()
  })

  it('writes then reads through resolve*Service never read stale inside it; outside it they can', async () => {
    const masterDb = await backends.sqlite.freshDatabase()
    const slaveDb = await backends.sqlite.freshDatabase()
    cleanups.push(masterDb.cleanup, slaveDb.cleanup)
    await rm.addReplica(
      'app',
      { name: 'main', role: 'master', dialect: 'sqlite', uri: masterDb.uri, schemaStrategy: 'create' },
      [Note],
    )
    await rm.addReplica('app', {
      name: 'copy',
      role: 'slave',
      dialect: 'sqlite',
      uri: slaveDb.uri,
      replication: 'managed',
      lagTolerance: 5000,
    })
    await waitFor(
      () => rm.getReplicaStatus('app').find((replica) => replica.name === 'copy')!.status === 'healthy',
      15_000,
      'the managed slave serves reads',
    )
    // what a handler does: resolve, write, resolve, read its own row back
    const handler = async (text: string) => {
      const written = await rm.resolveWriteService('app').create('Note', { text })
      return rm.resolveReadService('app').findById('Note', written.id)
    }
    let staleOutside = 0
    for (let round = 0; round < 30; round++) if ((await handler(`outside ${round}`)) === null) staleOutside++
    expect(staleOutside).toBeGreaterThan(0) // the slave does lag behind: the test below can fail

    const handled = await Promise.all(
      Array.from({ length: 30 }, (_, round) => rm.withSession('app', () => handler(`inside ${round}`))),
    )
    expect(handled.filter((row) => row === null)).toEqual([])
    expect(handled.map((row) => row!.text)).toEqual(Array.from({ length: 30 }, (_, round) => `inside ${round}`))

    // one session per piece of work; none outside; a nested call keeps the one under way
    expect(rm.currentSession('app')).toBeUndefined()
    await rm.withSession('app', async () => {
      const outer = rm.currentSession('app')
      expect(outer).toBeDefined()
      await rm.withSession('app', async () => expect(rm.currentSession('app')).toBe(outer))
      await rm.withSession('app', () => Promise.resolve()).then(() => expect(rm.currentSession('app')).toBe(outer))
    })
    const [first, second] = await Promise.all([
      rm.withSession('app', async () => rm.currentSession('app')),
      rm.withSession('app', async () => rm.currentSession('app')),
    ])
    expect(first).not.toBe(second)
  })
})

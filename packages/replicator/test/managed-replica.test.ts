import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type EntitySchema } from '@mostajs/replicator'
import { testBackends, waitFor } from '@mostajs/replicator-testkit/vitest'

const backends = testBackends()
const Client: EntitySchema = {
  name: 'Client',
  collection: 'clients',
  fields: { email: { type: 'string', required: true }, vip: { type: 'boolean' }, balance: { type: 'number' } },
  timestamps: true,
}

describe.skipIf(!backends.postgres.serverUrl)(
  `managed replica (T9): PostgreSQL master, SQLite slave fed by change capture${backends.postgres.serverUrl ? '' : ` (skipped: ${backends.postgres.skipReason})`}`,
  () => {
    const rm = new ReplicationManager(null, { heartbeatIntervalMs: 100, healthCheckIntervalMs: 300 })
    const cleanups: Array<() => Promise<void>> = []
    afterAll(async () => {
      await rm.disconnectAll()
      for (const cleanup of cleanups) await cleanup()
    })

    it('CRUD on the master is readable on the slave through resolveReadService, with measured lag', async () => {
      const masterDb = await backends.postgres.freshDatabase()
      const slaveDb = await backends.sqlite.freshDatabase()
      cleanups.push(masterDb.cleanup, slaveDb.cleanup)
      await rm.addReplica(
        'crm',
        { name: 'primary', role: 'master', dialect: 'postgres', uri: masterDb.uri, schemaStrategy: 'create' },
        [Client],
      )
      await rm.addReplica('crm', {
        name: 'local',
        role: 'slave',
        dialect: 'sqlite',
        uri: slaveDb.uri,
        replication: 'managed',
        lagTolerance: 2000,
      })
      const writes = rm.resolveWriteService('crm')
      const ada = await writes.create('Client', { email: 'ada@example.com', vip: true, balance: 10.5 })
      const bob = await writes.create('Client', { email: 'bob@example.com', vip: false, balance: 0 })
      await writes.update('Client', bob.id, { balance: 99.25 })
      await writes.delete('Client', ada.id)
      // a table created after the replica was added is followed too
      await writes.dialect.ensureCollection({
        name: 'notes',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'text', type: 'text' },
        ],
        primaryKey: ['id'],
      })
      await writes.dialect.upsertMany('notes', [{ id: 1, text: 'later table' }])

      await waitFor(
        () => rm.getReplicaStatus('crm').find((replica) => replica.name === 'local')!.status === 'healthy',
        15_000,
        'managed slave healthy',
      )
      const slave = rm.getReplicaStatus('crm').find((replica) => replica.name === 'local')!
      expect(slave.replication).toBe('managed')
      expect(slave.lag).not.toBeNull()
      expect(slave.lag!).toBeLessThanOrEqual(2000)

      const session = rm.session('crm')
      await waitFor(
        async () => {
          const reader = rm.resolveReadService('crm')
          if (!reader.dialect.maskedUri.startsWith('sqlite:')) return false
          const rows = await reader.findAll('Client', {}, { sort: { email: 1 } }).catch(() => [])
          return rows.length === 1 && rows[0]!.balance === 99.25
        },
        15_000,
        'rows on the slave',
      )
      const reader = rm.resolveReadService('crm')
      expect(reader.dialect.maskedUri).toBe(slaveDb.uri)
      expect(await reader.findById('Client', bob.id)).toMatchObject({
        email: 'bob@example.com',
        vip: false,
        balance: 99.25,
      })
      expect(await reader.findById('Client', ada.id)).toBeNull()
      await waitFor(
        async () => (await reader.dialect.findOne('notes', { id: 1 }).catch(() => null))?.text === 'later table',
        15_000,
        'later table on the slave',
      )
      // read-your-writes through a session works with a managed slave as well
      const carol = await session.write().create('Client', { email: 'carol@example.com' })
      expect((await session.read().findById('Client', carol.id))?.email).toBe('carol@example.com')
    })
  },
)

describe('promoting a managed replica', () => {
  it('applies every write the master committed before the promotion (a final catch-up), and says nothing may be lost', async () => {
    const masterDb = await backends.sqlite.freshDatabase()
    const slaveDb = await backends.sqlite.freshDatabase()
    const rm = new ReplicationManager(null, { heartbeatIntervalMs: 500, healthCheckIntervalMs: 300 })
    rm.on('error', () => undefined)
    try {
      await rm.addReplica('crm', { name: 'primary', role: 'master', dialect: 'sqlite', uri: masterDb.uri })
      const master = rm.resolveWriteService('crm').dialect
      await master.ensureCollection({
        name: 'orders',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'qty', type: 'integer' },
        ],
        primaryKey: ['id'],
      })
      await rm.addReplica('crm', {
        name: 'local',
        role: 'slave',
        dialect: 'sqlite',
        uri: slaveDb.uri,
        replication: 'managed',
        lagTolerance: 60_000,
      })
      await master.upsertMany('orders', [{ id: 0, qty: 0 }])
      const slave = rm.getReplicaStatus('crm').find((replica) => replica.name === 'local')!
      await waitFor(
        async () =>
          (await rm
            .resolveReadService('crm')
            .dialect.count('orders')
            .catch(() => 0)) === 1 &&
          rm.getReplicaStatus('crm').find((replica) => replica.name === 'local')!.lag !== null,
        15_000,
        'the managed slave applied the first row and a heartbeat',
      )
      expect(slave.replication).toBe('managed')
      // a burst of writes, then a promotion at once: the feed (every 200 ms at most) has not read them
      for (let batch = 0; batch < 5; batch++)
        await master.upsertMany(
          'orders',
          Array.from({ length: 100 }, (_, i) => ({ id: 1 + batch * 100 + i, qty: i })),
        )
      const result = await rm.promoteToMaster('crm', 'local')
      expect(result.possibleDataLoss).toBeNull()
      const promoted = rm.resolveWriteService('crm').dialect
      expect(promoted.maskedUri).toBe(slaveDb.uri)
      expect(await promoted.count('orders')).toBe(501)
    } finally {
      await rm.disconnectAll()
      await masterDb.cleanup()
      await slaveDb.cleanup()
    }
  })
})

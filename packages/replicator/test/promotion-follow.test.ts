import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager, type Dialect, type Row } from '@mostajs/replicator'
import { sqliteFile, startPostgres, startPostgresStandby, type RunningPostgres } from '@mostajs/replicator-testkit'
import { privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('postgres')

const rowsOf = (dialect: Dialect): Promise<Row[]> => dialect.find('orders', {}, { sort: { id: 1 } })

describe.skipIf(!available)(
  `after promoteToMaster, managed slaves and CDC rules follow the new master${skipNote}`,
  () => {
    let master: RunningPostgres
    let standby: RunningPostgres
    let standbyUri = ''
    let masterUri = ''
    const files = [sqliteFile('local.db'), sqliteFile('analytics.db')]
    const manager = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    manager.on('error', () => undefined)

    beforeAll(async () => {
      master = await startPostgres()
      masterUri = await master.createDatabase('shop')
      const setup = await connectDialect({ dialect: 'postgres', uri: masterUri })
      await setup.ensureCollection({
        name: 'orders',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'qty', type: 'integer' },
        ],
        primaryKey: ['id'],
      })
      await setup.close()
      standby = await startPostgresStandby(master)
      const url = new URL(masterUri)
      url.port = String(standby.port)
      standbyUri = url.toString()
      await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
      await manager.addReplica('shop', {
        name: 'standby',
        role: 'slave',
        dialect: 'postgres',
        uri: standbyUri,
        lagTolerance: 2000,
      })
      await manager.addReplica('shop', {
        name: 'local',
        role: 'slave',
        dialect: 'sqlite',
        uri: files[0]!.uri,
        replication: 'managed',
        lagTolerance: 2000,
      })
      await manager.addReplica('analytics', { name: 'main', role: 'master', dialect: 'sqlite', uri: files[1]!.uri })
      await manager.addReplicationRule({
        name: 'orders-out',
        source: 'shop',
        target: 'analytics',
        mode: 'cdc',
        collections: ['orders'],
      })
      await manager.startRule('orders-out', { intervalMs: 50 })
    })

    afterAll(async () => {
      await manager.disconnectAll()
      await standby?.stop()
      await master?.stop()
      for (const file of files) file.cleanup()
    })

    it('re-seeds the managed SQLite slave and the rule target from the promoted standby, deletes included, then streams from it', async () => {
      const writes = () => manager.resolveWriteService('shop').dialect
      await writes().upsertMany(
        'orders',
        Array.from({ length: 200 }, (_, index) => ({ id: index + 1, qty: 1 })),
      )
      const local = await connectDialect({ dialect: 'sqlite', uri: files[0]!.uri })
      const analytics = await connectDialect({ dialect: 'sqlite', uri: files[1]!.uri })
      try {
        await waitFor(
          async () =>
            (await analytics.count('orders').catch(() => 0)) === 200 &&
            (await local.count('orders').catch(() => 0)) === 200,
          20_000,
          'copies before the promotion',
        )
        // Changes the rule has not seen when the master is fenced: its stream is stopped first,
        // so only the re-seed from the new master can carry them (the deletes too).
        await manager.stopRule('orders-out')
        await writes().deleteMany('orders', [1, 2, 3])
        await writes().upsertMany('orders', [
          { id: 4, qty: 40 },
          { id: 201, qty: 201 },
        ])
        await waitFor(
          () =>
            (manager.getReplicaStatus('shop').find((replica) => replica.name === 'standby')!.lag ?? Infinity) < 2000,
          20_000,
          'standby within tolerance',
        )
        const result = await manager.promoteToMaster('shop', 'standby')
        await manager.startRule('orders-out')
        expect(result.previousMaster).toBe('primary')
        expect(manager.resolveWriteService('shop').dialect.maskedUri).toContain(`:${standby.port}/`)
        // writes resume on the new master and reach both copies
        await writes().upsertMany('orders', [
          { id: 202, qty: 202 },
          { id: 5, qty: 50 },
        ])
        await writes().deleteMany('orders', [6])
        const newMaster = await connectDialect({ dialect: 'postgres', uri: standbyUri })
        let finalRows = 0
        try {
          const expected = await rowsOf(newMaster)
          finalRows = expected.length
          expect(expected.map((row) => row.id)).not.toContain(1)
          expect(expected).toContainEqual({ id: 202, qty: 202 })
          await waitFor(
            async () => JSON.stringify(await rowsOf(analytics)) === JSON.stringify(expected),
            30_000,
            'rule target equal to the new master',
          )
          await waitFor(
            async () => JSON.stringify(await rowsOf(local)) === JSON.stringify(expected),
            30_000,
            'managed slave equal to the new master',
          )
          // the old master keeps no slot holding WAL for the rule or the managed slave
          const old = await connectDialect({ dialect: 'postgres', uri: masterUri })
          try {
            expect(await old.query('SELECT slot_name FROM pg_replication_slots')).toEqual([])
          } finally {
            await old.close()
          }
          // and the new master has exactly the rule's and the managed slave's
          expect(
            (await newMaster.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots ORDER BY 1'))
              .length,
          ).toBe(2)
        } finally {
          await newMaster.close()
        }
        const stats = manager.getSyncStats('orders-out')
        expect(stats.reseeds).toBe(1)
        // The counters before the promotion (200 rows) are kept; the re-seed adds its copy of the
        // new master's rows and its deletes (at least ids 1-3; id 6 too when the re-seed ran after
        // that write, else the stream carried it).
        expect(stats.recordsSynced).toBeGreaterThanOrEqual(200 + finalRows + 3)
        expect(stats.deleted).toBeGreaterThanOrEqual(4)
        expect(manager.getStreamState('orders-out')?.lastError ?? null).toBeNull()
      } finally {
        await local.close()
        await analytics.close()
      }
    })
  },
)

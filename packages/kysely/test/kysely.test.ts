import '@mostajs/replicator-dialect-postgres'
import { Kysely, sql, type Generated } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type Dialect } from '@mostajs/replicator'
import { ReplicatedDialect } from '@mostajs/replicator-kysely'
import { startPostgresPair, type PostgresPair } from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

interface Database {
  orders: { id: Generated<number>; label: string; total: number }
}

const { available, skipNote } = privateServer('postgres')

describe.skipIf(!available)(
  `Kysely through the replicator: a PostgreSQL master and a native standby${skipNote}`,
  () => {
    let pair: PostgresPair
    let rm: ReplicationManager
    let db: Kysely<Database>
    let onMaster: Dialect // direct connections, around the manager
    let onStandby: Dialect
    const routed = () => rm.getRoutingStatus('shop').readsRouted

    beforeAll(async () => {
      pair = await startPostgresPair('shop', (master) =>
        master.query('CREATE TABLE orders (id serial PRIMARY KEY, label text NOT NULL, total integer NOT NULL)'),
      )
      ;({ onMaster, onStandby } = pair)
      rm = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 100 })
      await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: pair.masterUri })
      await rm.addReplica('shop', {
        name: 'standby',
        role: 'slave',
        dialect: 'postgres',
        uri: pair.standbyUri,
        lagTolerance: 2000,
      })
      await waitFor(
        async () => rm.getRoutingStatus('shop').eligible.includes('standby'),
        15_000,
        'the standby eligible',
      )
      db = new Kysely<Database>({ dialect: new ReplicatedDialect({ manager: rm, project: 'shop' }) })
    })

    afterAll(async () => {
      await db?.destroy()
      await rm?.disconnectAll()
      await pair?.stop()
    })

    it('writes go to the master (with affected rows and RETURNING), selects to the standby', async () => {
      const before = routed()
      const inserted = await db
        .insertInto('orders')
        .values([
          { label: 'a', total: 10 },
          { label: 'b', total: 20 },
        ])
        .returning('id')
        .execute()
      expect(inserted).toHaveLength(2)
      const updated = await db.updateTable('orders').set({ total: 11 }).where('label', '=', 'a').executeTakeFirst()
      expect(updated.numUpdatedRows).toBe(1n)
      expect(routed()).toEqual(before) // no write was routed as a read
      await waitFor(
        async () => (await db.selectFrom('orders').selectAll().execute()).length === 2,
        10_000,
        'the rows on the standby',
      )
      const rows = await db.selectFrom('orders').select(['label', 'total']).orderBy('label').execute()
      expect(rows).toEqual([
        { label: 'a', total: 11 },
        { label: 'b', total: 20 },
      ])
      expect(routed().standby).toBeGreaterThan(before.standby ?? 0)
    })

    it('a transaction runs whole on the master: its reads see its writes, a throw rolls it back', async () => {
      const total = await db.transaction().execute(async (trx) => {
        await trx.insertInto('orders').values({ label: 'in-tx', total: 5 }).execute()
        const row = await trx
          .selectFrom('orders')
          .select('total')
          .where('label', '=', 'in-tx')
          .executeTakeFirstOrThrow()
        return row.total // read inside the transaction: only the master has it
      })
      expect(total).toBe(5)
      await expect(
        db.transaction().execute(async (trx) => {
          await trx.insertInto('orders').values({ label: 'rolled back', total: 1 }).execute()
          throw new Error('abort')
        }),
      ).rejects.toThrow('abort')
      expect(await onMaster.count('orders', { label: 'rolled back' })).toBe(0)
      expect(await onMaster.count('orders', { label: 'in-tx' })).toBe(1)
    })

    it('inside withSession, a read right after a write sees it (the standby is skipped until it applied it)', async () => {
      await onStandby.query('SELECT pg_wal_replay_pause()') // the standby stops applying
      try {
        await rm.withSession('shop', async () => {
          await db.insertInto('orders').values({ label: 'mine', total: 7 }).execute()
          const mine = await db.selectFrom('orders').select('total').where('label', '=', 'mine').executeTakeFirst()
          expect(mine?.total).toBe(7)
        })
      } finally {
        await onStandby.query('SELECT pg_wal_replay_resume()')
      }
    })

    it('raw SQL: reads may go to the standby, writes go to the master; a SELECT … FOR UPDATE too', async () => {
      const before = routed()
      await sql`UPDATE orders SET total = total + 1 WHERE label = 'b'`.execute(db)
      await db.selectFrom('orders').selectAll().where('label', '=', 'b').forUpdate().execute()
      expect(routed()).toEqual(before)
      const read = await sql<{ n: string }>`SELECT count(*) AS n FROM orders`.execute(db)
      expect(Number(read.rows[0]!.n)).toBeGreaterThan(0)
    })

    it('a project without a master is refused with a clear error', async () => {
      const empty = new ReplicationManager()
      try {
        const dialect = new ReplicatedDialect({ manager: empty, project: 'nowhere' })
        await expectReplicatorError(
          Promise.resolve().then(() => dialect.createAdapter()),
          'REPLICA_NOT_FOUND',
        )
      } finally {
        await empty.disconnectAll()
      }
    })
  },
)

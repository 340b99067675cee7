import '@mostajs/replicator-dialect-postgres'
import { eq, sql } from 'drizzle-orm'
import { integer, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type Dialect } from '@mostajs/replicator'
import { replicatedDrizzle } from '@mostajs/replicator-drizzle'
import { startPostgresPair, type PostgresPair } from '@mostajs/replicator-testkit'
import { privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

const orders = pgTable('orders', {
  id: serial('id').primaryKey(),
  label: text('label').notNull(),
  total: integer('total').notNull(),
  placedAt: timestamp('placed_at', { withTimezone: true }).notNull().defaultNow(),
})
const customers = pgTable('customers', { id: serial('id').primaryKey(), label: text('label').notNull() })

const { available, skipNote } = privateServer('postgres')

describe.skipIf(!available)(
  `Drizzle through the replicator: a PostgreSQL master and a native standby${skipNote}`,
  () => {
    let pair: PostgresPair
    let rm: ReplicationManager
    let onMaster: Dialect
    let onStandby: Dialect
    let db: ReturnType<typeof replicatedDrizzle>
    const routed = () => rm.getRoutingStatus('shop').readsRouted

    beforeAll(async () => {
      pair = await startPostgresPair('shop', async (master) => {
        await master.query(
          'CREATE TABLE orders (id serial PRIMARY KEY, label text NOT NULL, total integer NOT NULL, placed_at timestamptz NOT NULL DEFAULT now())',
        )
        await master.query('CREATE TABLE customers (id serial PRIMARY KEY, label text NOT NULL)')
      })
      ;({ onMaster, onStandby } = pair)
      rm = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 100 })
      await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: pair.masterUri })
      await rm.addReplica('shop', {
        name: 'standby',
        role: 'slave',
        dialect: 'postgres',
        uri: pair.standbyUri,
        lagTolerance: 10_000,
      })
      await waitFor(() => rm.getRoutingStatus('shop').eligible.includes('standby'), 15_000, 'the standby eligible')
      db = replicatedDrizzle(rm, 'shop')
    })

    afterAll(async () => {
      await rm?.disconnectAll()
      await pair?.stop()
    })

    it('writes go to the master, selects (joins with equal column names, dates) to the standby', async () => {
      const before = routed()
      const inserted = await db
        .insert(orders)
        .values([
          { label: 'a', total: 10 },
          { label: 'b', total: 20 },
        ])
        .returning({ id: orders.id })
      expect(inserted).toHaveLength(2)
      await db.insert(customers).values({ label: 'ada' })
      const updated = await db.update(orders).set({ total: 11 }).where(eq(orders.label, 'a'))
      expect(updated.rowCount).toBe(1)
      expect(routed()).toEqual(before) // no write was routed as a read
      await waitFor(async () => (await onStandby.count('orders')) === 2, 10_000, 'the rows on the standby')
      const rows = await db
        .select({ order: orders.label, total: orders.total, at: orders.placedAt, customer: customers.label })
        .from(orders)
        .innerJoin(customers, eq(customers.id, orders.id))
      expect(rows).toEqual([{ order: 'a', total: 11, at: expect.any(Date), customer: 'ada' }]) // both tables have `label`
      expect(routed().standby).toBeGreaterThan(before.standby ?? 0)
    })

    it('a transaction runs whole on the master: its reads see its writes, a throw rolls it back, a savepoint too', async () => {
      const total = await db.transaction(async (tx) => {
        await tx.insert(orders).values({ label: 'in-tx', total: 5 })
        const [row] = await tx.select({ total: orders.total }).from(orders).where(eq(orders.label, 'in-tx'))
        await tx
          .transaction(async (nested) => {
            await nested.insert(orders).values({ label: 'nested, rolled back', total: 1 })
            throw new Error('undo the savepoint')
          })
          .catch(() => undefined)
        return row!.total
      })
      expect(total).toBe(5)
      await expect(
        db.transaction(async (tx) => {
          await tx.insert(orders).values({ label: 'rolled back', total: 1 })
          throw new Error('abort')
        }),
      ).rejects.toThrow('abort')
      expect(await onMaster.count('orders', { label: 'in-tx' })).toBe(1)
      expect(await onMaster.count('orders', { label: 'rolled back' })).toBe(0)
      expect(await onMaster.count('orders', { label: 'nested, rolled back' })).toBe(0)
    })

    it('inside withSession, a read right after a write sees it while the standby lags', async () => {
      await onStandby.query('SELECT pg_wal_replay_pause()')
      try {
        await rm.withSession('shop', async () => {
          await db.insert(orders).values({ label: 'mine', total: 7 })
          const [mine] = await db.select().from(orders).where(eq(orders.label, 'mine'))
          expect(mine?.total).toBe(7)
        })
        expect(await db.select().from(orders).where(eq(orders.label, 'mine'))).toEqual([]) // no session: the stale standby
      } finally {
        await onStandby.query('SELECT pg_wal_replay_resume()')
      }
    })

    it('raw SQL and locking reads go to the master', async () => {
      const before = routed()
      await db.execute(sql`UPDATE orders SET total = total + 1 WHERE label = 'b'`)
      await db.select().from(orders).where(eq(orders.label, 'b')).for('update')
      expect(routed()).toEqual(before)
    })
  },
)

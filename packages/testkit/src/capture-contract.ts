import { expect, it } from 'vitest'
import type { ChangeEvent, CollectionSchema, Dialect } from '@mostajs/replicator-core'
import { describeOnDialect, type DialectUnderTest } from './contract-helpers.js'

const orders: CollectionSchema = {
  name: 'orders',
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'label', type: 'string' },
  ],
  primaryKey: ['id'],
}

/** Options of {@link testCaptureContract}. */
export interface CaptureContractOptions {
  /**
   * Tests of what only this dialect's capture has (PostgreSQL's REPLICA IDENTITY, TOAST, …),
   * run after the contract in the same block, on the same fresh database (`db()`).
   */
  additionalTests?: (db: () => Dialect) => void
}

/**
 * The change capture contract, for every dialect that has `capture`: inserts, updates and
 * deletes arrive in commit order with their keys and after-images; nothing is forgotten before
 * it is confirmed; a confirmed position is not handed out again; dropping removes the capture.
 */
export function testCaptureContract(subject: DialectUnderTest, options: CaptureContractOptions = {}): void {
  describeOnDialect(subject, 'capture contract', (db) => {
    it('has a capture', () => {
      expect(db().capture).toBeDefined()
    })

    it('hands out every change in commit order, again until confirmed, never after', async () => {
      const dialect = db()
      const capture = dialect.capture!
      await dialect.ensureCollection(orders)
      await capture.setup({ name: 'contract', collections: ['orders'] })
      await dialect.transaction(async (tx) => {
        await tx.upsertMany('orders', [
          { id: 1, label: 'one' },
          { id: 2, label: 'two' },
        ])
      })
      await dialect.update('orders', { id: 1 }, { label: 'uno' })
      await dialect.delete('orders', { id: 2 })
      const summary = (events: ChangeEvent[]) => events.map((event) => `${event.op}:${String(event.key)}`)
      const first = await capture.read('contract', { after: null, maxEvents: 100 })
      expect(summary(first.events)).toEqual(['c:1', 'c:2', 'u:1', 'd:2'])
      expect(first.events[2]!.after).toMatchObject({ id: 1, label: 'uno' })
      expect(first.position).not.toBeNull()
      // not confirmed: handed out again from the start
      const again = await capture.read('contract', { after: null, maxEvents: 100 })
      expect(summary(again.events)).toEqual(['c:1', 'c:2', 'u:1', 'd:2'])
      await capture.confirm('contract', first.position!)
      await dialect.upsertMany('orders', [{ id: 3, label: 'three' }])
      const next = await capture.read('contract', { after: first.position, maxEvents: 100 })
      expect(summary(next.events)).toEqual(['c:3'])
      await capture.confirm('contract', next.position!)
      const none = await capture.read('contract', { after: next.position, maxEvents: 100 })
      expect(none.events).toEqual([])
    })

    it('drop removes the capture and what it holds', async () => {
      const capture = db().capture!
      await capture.drop('contract')
      expect(await capture.backlog('contract')).toBeNull()
      await capture.drop('contract') // idempotent
    })
    options.additionalTests?.(db)
  })
}

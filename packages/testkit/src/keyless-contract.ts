import { describe, expect, it } from 'vitest'
import type { Dialect, Row } from '@mostajs/replicator-core'
import { expectReplicatorError } from './contract-helpers.js'

/** Tables without a primary key: equal rows are copies, and each one-row call touches one of them. */
export function keylessContract(dialect: () => Dialect): void {
  describe('tables without a primary key', () => {
    const sorted = (rows: Row[]) => rows.map((row) => JSON.stringify([Number(row.n), row.label, row.doc])).sort()

    it('insertMany keeps copies; deleteOne and replaceOne touch one row equal in every given column, NULL included', async () => {
      const db = dialect()
      await db.ensureCollection({
        name: 'loose_rows',
        columns: [
          { name: 'n', type: 'integer', nullable: false },
          { name: 'label', type: 'string', length: 10 },
          { name: 'doc', type: 'json' },
        ],
        primaryKey: [],
      })
      expect((await db.describeCollection('loose_rows')).primaryKey).toEqual([])
      const copy = { n: 1, label: 'same', doc: { a: [1, 2] } }
      expect(await db.insertMany!('loose_rows', [copy, copy, { n: 2, label: null, doc: null }])).toBe(3)
      expect(await db.deleteOne!('loose_rows', copy)).toBe(1)
      expect(await db.count('loose_rows', { n: 1 })).toBe(1) // one copy left
      expect(await db.replaceOne!('loose_rows', { n: 2, label: null, doc: null }, { n: 2, label: 'set' })).toBe(1)
      expect(await db.deleteOne!('loose_rows', { n: 9, label: 'none', doc: null })).toBe(0)
      expect(await db.replaceOne!('loose_rows', { n: 9 }, { n: 10 })).toBe(0)
      expect(sorted(await db.find('loose_rows'))).toEqual(
        sorted([
          { n: 1, label: 'same', doc: { a: [1, 2] } },
          { n: 2, label: 'set', doc: null },
        ]),
      )
    })

    it('a row the table refuses fails insertMany with ROW_REJECTED, and none of its rows is written', async () => {
      const db = dialect()
      const before = await db.count('loose_rows')
      await expectReplicatorError(
        db.insertMany!('loose_rows', [
          { n: 3, label: 'fine' },
          { n: null, label: 'no n' }, // n is NOT NULL
        ]),
        'ROW_REJECTED',
      )
      expect(await db.count('loose_rows')).toBe(before)
    })
  })
}

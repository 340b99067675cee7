import { randomBytes } from 'node:crypto'
import { expect, it } from 'vitest'
import type { ChangeEvent, CollectionSchema, Dialect } from '@mostajs/replicator-core'

// What only the PostgreSQL capture has, at the capture's own level: REPLICA IDENTITY decides
// which updates and deletes can be keyed, and an unchanged TOASTed value is not resent.

const coded = (name: string): CollectionSchema => ({
  name,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'code', type: 'string', length: 20 },
    { name: 'label', type: 'string' },
  ],
  primaryKey: ['id'],
})
const summary = (events: ChangeEvent[]) =>
  events.map((event) => `${event.op}:${String(event.key)}${event.movedFrom ? `<${String(event.movedFrom)}` : ''}`)

/** Reads and confirms everything the capture `name` holds now. */
async function readAll(db: Dialect, name: string): Promise<ChangeEvent[]> {
  const batch = await db.capture!.read(name, { after: null, maxEvents: 1000 })
  if (batch.position) await db.capture!.confirm(name, batch.position)
  return batch.events
}

export function postgresCaptureTests(db: () => Dialect): void {
  const identities = [
    ['FULL', (table: string) => [`ALTER TABLE ${table} REPLICA IDENTITY FULL`]],
    [
      'USING INDEX (holding the key)',
      (table: string) => [
        `CREATE UNIQUE INDEX ${table}_code_id ON ${table} (code, id)`,
        `ALTER TABLE ${table} REPLICA IDENTITY USING INDEX ${table}_code_id`,
      ],
    ],
  ] as const
  for (const [index, [identity, alter]] of identities.entries())
    it(`REPLICA IDENTITY ${identity}: updates, deletes and key changes arrive keyed`, async () => {
      const table = `coded_${index}`
      const dialect = db()
      await dialect.ensureCollection(coded(table))
      await dialect.query(`ALTER TABLE ${table} ALTER COLUMN code SET NOT NULL`)
      for (const statement of alter(table)) await dialect.query(statement)
      expect(await dialect.capture!.uncapturable!([table])).toEqual([])
      await dialect.capture!.setup({ name: table, collections: [table] })
      await dialect.upsertMany(
        table,
        [1, 2, 3].map((id) => ({ id, code: `c${id}`, label: `l${id}` })),
      )
      await dialect.query(`UPDATE ${table} SET label = 'changed' WHERE id = 1`)
      await dialect.query(`DELETE FROM ${table} WHERE id = 2`)
      await dialect.query(`UPDATE ${table} SET id = 30 WHERE id = 3`)
      const events = await readAll(dialect, table)
      expect(summary(events)).toEqual(['c:1', 'c:2', 'c:3', 'u:1', 'd:2', 'd:3', 'u:30<3'])
      expect(events[3]!.after).toMatchObject({ id: 1, code: 'c1', label: 'changed' })
      await dialect.capture!.drop(table)
    })

  const refused = [
    ['NOTHING', (table: string) => [`ALTER TABLE ${table} REPLICA IDENTITY NOTHING`], /REPLICA IDENTITY NOTHING/],
    [
      'USING INDEX without the key',
      (table: string) => [
        `CREATE UNIQUE INDEX ${table}_code ON ${table} (code)`,
        `ALTER TABLE ${table} REPLICA IDENTITY USING INDEX ${table}_code`,
      ],
      /REPLICA IDENTITY USING INDEX on \(code\), without its key column\(s\) id/,
    ],
  ] as const
  for (const [index, [identity, alter, reason]] of refused.entries())
    it(`REPLICA IDENTITY ${identity}: the table is reported uncapturable, with the reason`, async () => {
      const table = `refused_${index}`
      const dialect = db()
      await dialect.ensureCollection(coded(table))
      await dialect.query(`ALTER TABLE ${table} ALTER COLUMN code SET NOT NULL`)
      for (const statement of alter(table)) await dialect.query(statement)
      expect(await dialect.capture!.uncapturable!([table, 'orders'])).toEqual([
        { collection: table, reason: expect.stringMatching(reason) },
      ])
    })

  it('a key change of a row whose TOASTed value is unchanged: the upsert names the old key, the value is not resent', async () => {
    const dialect = db()
    await dialect.ensureCollection({
      name: 'docs',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'body', type: 'text' },
      ],
      primaryKey: ['id'],
    })
    await dialect.capture!.setup({ name: 'docs', collections: ['docs'] })
    const body = randomBytes(20_000).toString('hex') // incompressible: stored out of line (TOAST)
    await dialect.upsertMany('docs', [{ id: 1, body }])
    await dialect.query('UPDATE docs SET id = 2 WHERE id = 1')
    const events = await readAll(dialect, 'docs')
    expect(summary(events)).toEqual(['c:1', 'd:1', 'u:2<1'])
    expect(events[0]!.after!.body).toBe(body)
    expect(events[2]!.after!.body).toBeUndefined() // the apply takes it from the target's row at the old key
    await dialect.capture!.drop('docs')
  })
}

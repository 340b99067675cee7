import '@mostajs/replicator-dialect-sqlite'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect, it } from 'vitest'
import { connectDialect } from '@mostajs/replicator-core'
import { sqliteFile } from '@mostajs/replicator-testkit'

// One connection serves a SQLite dialect, and a transaction holds it until it ends: a catalogue
// lookup made through the dialect (not its `tx`) inside that transaction must not wait for it.

it('a catalogue lookup through the dialect inside its own transaction answers (no deadlock)', async () => {
  const file = sqliteFile('catalogue.db')
  const db = await connectDialect({ dialect: 'sqlite', uri: file.uri })
  try {
    await db.ensureCollection({
      name: 'items',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'label', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    db.invalidateCatalog('items') // as after a schema change: the next description is read from the database
    const inside = db.transaction(async (tx) => {
      await tx.insert('items', { id: 1, label: 'one' })
      const description = await db.describeCollection('items')
      const tables = await db.listCollections()
      return { columns: description.columns.length, tables }
    })
    const outcome = await Promise.race([inside, sleep(3000).then(() => 'still waiting after 3 s')])
    expect(outcome).toEqual({ columns: 2, tables: ['items'] })
    expect(await db.count('items')).toBe(1)
  } finally {
    await db.close()
    file.cleanup()
  }
})

import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, type Dialect } from '@mostajs/replicator-core'
import { freshDatabases } from './fixtures/fresh-databases.js'
import { RuleRunner } from '@mostajs/replicator-cdc'
import { createMariaDBDatabase, sqliteFile, startMariaDB, type RunningMariaDB } from '@mostajs/replicator-testkit'
import {
  expectReplicatorError,
  privateServer,
  testBackends,
  type TestBackend,
} from '@mostajs/replicator-testkit/vitest'

// binlog_row_image decides what a MariaDB/MySQL row event holds: FULL (every column before and
// after), NOBLOB (unchanged BLOB/TEXT columns left out), MINIMAL (the key before, the changed
// columns after). A capture must carry each correctly or refuse it, never write a partial row.

const backends = testBackends()
const databases = freshDatabases()
const open = async (backend: TestBackend): Promise<Dialect> => (await databases.open(backend)).dialect

describe.skipIf(!backends.mariadb.serverUrl)('binlog_row_image', () => {
  for (const image of ['NOBLOB', 'MINIMAL']) {
    it(`${image}: updates of one column keep the others on the target`, async () => {
      const source = await open(backends.mariadb)
      const target = await open(backends.sqlite)
      await source.ensureCollection({
        name: 'notes',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'title', type: 'string', length: 50 },
          { name: 'body', type: 'text' },
        ],
        primaryKey: ['id'],
      })
      await source.upsertMany('notes', [{ id: 1, title: 'one', body: 'first body' }])
      const runner = new RuleRunner(
        { name: `image-${image}`, source: 'a', target: 'b', mode: 'cdc', collections: ['notes'] },
        source,
        target,
      )
      await runner.sync()
      await source.transaction(async (tx) => {
        await tx.query(`SET SESSION binlog_row_image = '${image}'`)
        await tx.query(`UPDATE notes SET title = 'uno' WHERE id = 1`)
        await tx.query(`INSERT INTO notes (id, title) VALUES (2, 'two')`)
        await tx.query(`UPDATE notes SET body = 'second body' WHERE id = 2`)
      })
      await runner.sync()
      expect(await target.find('notes', {}, { sort: { id: 1 } })).toEqual([
        { id: 1, title: 'uno', body: 'first body' },
        { id: 2, title: 'two', body: 'second body' },
      ])
      // a key change: the row image lacks the unchanged columns, the moved row keeps them
      await source.transaction(async (tx) => {
        await tx.query(`SET SESSION binlog_row_image = '${image}'`)
        await tx.query(`UPDATE notes SET id = 3 WHERE id = 1`)
      })
      await runner.sync()
      expect(await target.find('notes', {}, { sort: { id: 1 } })).toEqual([
        { id: 2, title: 'two', body: 'second body' },
        { id: 3, title: 'uno', body: 'first body' },
      ])
      await runner.teardown()
    })
  }
})

const mariadb = privateServer('mariadb')

describe.skipIf(!mariadb.available)(`binlog_row_image = MINIMAL on the server${mariadb.skipNote}`, () => {
  let server: RunningMariaDB | undefined
  const file = sqliteFile('row-image.db')
  const dialects: Dialect[] = []
  afterAll(async () => {
    for (const dialect of dialects) await dialect.close().catch(() => undefined)
    await server?.stop()
    file.cleanup()
  })

  it('a rule is refused with the reason (inserts would lose the columns filled by defaults)', async () => {
    server = await startMariaDB()
    const uri = (await createMariaDBDatabase(server.url, 'shop')).replace(/^mysql:/, 'mariadb:')
    const source = await connectDialect({ dialect: 'mariadb', uri })
    const target = await connectDialect({ dialect: 'sqlite', uri: file.uri })
    dialects.push(source, target)
    await source.ensureCollection({
      name: 'items',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'label', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await source.query(`SET GLOBAL binlog_row_image = 'MINIMAL'`)
    const runner = new RuleRunner(
      { name: 'minimal', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
      source,
      target,
    )
    const error = await expectReplicatorError(runner.prepare(), 'TYPE_UNSUPPORTED')
    expect(error.message).toMatch(/binlog_row_image is MINIMAL/)
    // the same server logging FULL again: accepted
    await source.query(`SET GLOBAL binlog_row_image = 'FULL'`)
    await runner.prepare()
    await runner.teardown()
  })
})

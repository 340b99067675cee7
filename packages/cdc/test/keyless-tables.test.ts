import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { describe, expect, it } from 'vitest'
import type { Dialect, Row } from '@mostajs/replicator-core'
import { freshDatabases } from './fixtures/fresh-databases.js'
import { DEAD_LETTERS_COLLECTION, RuleRunner } from '@mostajs/replicator-cdc'
import { expectReplicatorError, testBackends, type TestBackend } from '@mostajs/replicator-testkit/vitest'

// Tables without a primary key, carried when the source logs whole old rows (PostgreSQL
// REPLICA IDENTITY FULL, MariaDB binlog_row_image=FULL, SQLite triggers): duplicate rows stay
// duplicates, one delete removes one copy, and the snapshot meets the stream exactly.

const backends = testBackends()
const databases = freshDatabases()
const open = async (backend: TestBackend): Promise<Dialect> => (await databases.open(backend)).dialect

type Kind = TestBackend['kind']

/** The statements of one source database: a keyless table and one-row changes in its own SQL. */
const sql = {
  postgres: {
    create: 'CREATE TABLE log (at integer, message varchar(50)); ALTER TABLE log REPLICA IDENTITY FULL',
    deleteOne: (where: string) => `DELETE FROM log WHERE ctid = (SELECT ctid FROM log WHERE ${where} LIMIT 1)`,
    updateOne: (set: string, where: string) =>
      `UPDATE log SET ${set} WHERE ctid = (SELECT ctid FROM log WHERE ${where} LIMIT 1)`,
  },
  mariadb: {
    create: 'CREATE TABLE log (at integer, message varchar(50))',
    deleteOne: (where: string) => `DELETE FROM log WHERE ${where} LIMIT 1`,
    updateOne: (set: string, where: string) => `UPDATE log SET ${set} WHERE ${where} LIMIT 1`,
  },
  sqlite: {
    create: 'CREATE TABLE log (at integer, message varchar(50))',
    deleteOne: (where: string) => `DELETE FROM log WHERE rowid = (SELECT rowid FROM log WHERE ${where} LIMIT 1)`,
    updateOne: (set: string, where: string) =>
      `UPDATE log SET ${set} WHERE rowid = (SELECT rowid FROM log WHERE ${where} LIMIT 1)`,
  },
}

async function createLog(source: Dialect, kind: Kind): Promise<void> {
  for (const statement of sql[kind].create.split('; ')) await source.query(statement)
}

/** The rows of a keyless table as a sorted list (a multiset: duplicates are kept). */
async function multiset(dialect: Dialect): Promise<string[]> {
  const rows = await dialect.find('log')
  return rows.map((row: Row) => JSON.stringify([Number(row.at), row.message ?? null])).sort()
}

const pairs: Array<[Kind, Kind]> = [
  ['postgres', 'sqlite'],
  ['postgres', 'postgres'],
  ['mariadb', 'postgres'],
  ['sqlite', 'mariadb'],
  ['sqlite', 'sqlite'],
]

describe('tables without a primary key', () => {
  for (const [from, to] of pairs) {
    const available = backends[from].serverUrl && backends[to].serverUrl
    it.skipIf(!available)(`${from} → ${to}: duplicates, one-row deletes and updates, NULLs, TRUNCATE`, async () => {
      const source = await open(backends[from])
      const target = await open(backends[to])
      await createLog(source, from)
      await source.query("INSERT INTO log (at, message) VALUES (1, 'a'), (1, 'a'), (2, 'b')")
      const runner = new RuleRunner(
        { name: `keyless_${from}_${to}`, source: 'a', target: 'b', mode: 'cdc', collections: ['log'] },
        source,
        target,
      )
      await runner.sync()
      expect(await multiset(target)).toEqual(await multiset(source))

      await source.query("INSERT INTO log (at, message) VALUES (1, 'a'), (3, NULL)")
      await source.query(sql[from].deleteOne("at = 1 AND message = 'a'"))
      await source.query(sql[from].updateOne("message = 'c'", "at = 2 AND message = 'b'"))
      await source.query(sql[from].updateOne("message = 'was null'", 'at = 3 AND message IS NULL'))
      const stats = await runner.sync()
      expect(await multiset(source)).toEqual(['[1,"a"]', '[1,"a"]', '[2,"c"]', '[3,"was null"]'])
      expect(await multiset(target)).toEqual(await multiset(source))
      expect(stats).toMatchObject({ created: 2, deleted: 1, updated: 2 })

      // all copies of a row, in one statement
      await source.query("DELETE FROM log WHERE at = 1 AND message = 'a'")
      await runner.sync()
      expect(await multiset(target)).toEqual(['[2,"c"]', '[3,"was null"]'])

      await source.query(from === 'sqlite' ? 'DELETE FROM log' : 'TRUNCATE TABLE log')
      await source.query("INSERT INTO log (at, message) VALUES (4, 'after truncate')")
      await runner.sync()
      expect(await multiset(target)).toEqual(['[4,"after truncate"]'])
      await runner.teardown()
    })

    it.skipIf(!available)(
      `${from} → ${to}: rows written while the snapshot is taken are carried exactly once`,
      async () => {
        const source = await open(backends[from])
        const target = await open(backends[to])
        await createLog(source, from)
        const values = (start: number, count: number) =>
          Array.from({ length: count }, (_, index) => `(${start + index}, 'row ${start + index}')`).join(', ')
        await source.query(`INSERT INTO log (at, message) VALUES ${values(0, 2000)}`)
        const runner = new RuleRunner(
          { name: `keyless_cut_${from}_${to}`, source: 'a', target: 'b', mode: 'cdc', collections: ['log'] },
          source,
          target,
        )
        await runner.prepare() // the capture starts here: what follows is both in the log and in the table
        await source.query(`INSERT INTO log (at, message) VALUES ${values(2000, 300)}`)
        let writing = true
        let next = 2300
        const writer = (async () => {
          while (writing) {
            await source.query(`INSERT INTO log (at, message) VALUES ${values(next, 10)}`)
            next += 10
            await new Promise((resolve) => setTimeout(resolve, 2))
          }
        })()
        await runner.sync()
        writing = false
        await writer
        await runner.sync()
        const copied = await multiset(target)
        expect(copied.length).toBe(next)
        expect(copied).toEqual(await multiset(source))
        await runner.teardown()
      },
    )
  }

  it.skipIf(!backends.postgres.serverUrl)(
    'sqlite → postgres: rows the target refuses are dead-lettered each under its own id; the others land',
    async () => {
      const source = await open(backends.sqlite)
      const target = await open(backends.postgres)
      await createLog(source, 'sqlite')
      await target.query('CREATE TABLE log (at integer, message varchar(5))') // shorter: long messages are refused
      const runner = new RuleRunner(
        { name: 'keyless_rejected', source: 'a', target: 'b', mode: 'cdc', collections: ['log'] },
        source,
        target,
      )
      await source.query("INSERT INTO log (at, message) VALUES (0, 'ok'), (0, 'copied but far too long')")
      const copied = await runner.sync() // the snapshot: the refused row is dead-lettered, not a stop
      expect(copied.deadLettered).toBe(1)
      await source.transaction(async (tx) => {
        await tx.query("INSERT INTO log (at, message) VALUES (1, 'ok'), (2, 'far too long'), (2, 'far too long')")
        await tx.query("INSERT INTO log (at, message) VALUES (3, 'ok'), (3, 'ok')")
      })
      const stats = await runner.sync()
      expect(await multiset(target)).toEqual(['[0,"ok"]', '[1,"ok"]', '[3,"ok"]', '[3,"ok"]'])
      const letters = await target.find(DEAD_LETTERS_COLLECTION, { rule: 'keyless_rejected' })
      expect(letters).toHaveLength(3) // the copy's one, then two equal rows: two letters
      expect(String(letters[0]!.error)).toMatch(/too long/)
      expect(stats).toMatchObject({ created: 3, deadLettered: 3 })
      await runner.teardown()
    },
  )

  it.skipIf(!backends.mariadb.serverUrl)(
    "mariadb → sqlite: mode 'snapshot' mirrors a keyless table whole at each sync",
    async () => {
      const source = await open(backends.mariadb)
      const target = await open(backends.sqlite)
      await createLog(source, 'mariadb')
      await source.query("INSERT INTO log (at, message) VALUES (1, 'a'), (1, 'a'), (2, NULL)")
      const runner = new RuleRunner(
        { name: 'keyless_mirror', source: 'a', target: 'b', mode: 'snapshot', collections: ['log'] },
        source,
        target,
      )
      await runner.sync()
      expect(await multiset(target)).toEqual(await multiset(source))
      await source.query(sql.mariadb.deleteOne("at = 1 AND message = 'a'"))
      await source.query("INSERT INTO log (at, message) VALUES (5, 'e')")
      await runner.sync()
      expect(await multiset(target)).toEqual(['[1,"a"]', '[2,null]', '[5,"e"]'])
    },
  )

  it.skipIf(!backends.postgres.serverUrl)(
    'postgres: a keyless table without REPLICA IDENTITY FULL is refused with the fix',
    async () => {
      const source = await open(backends.postgres)
      const target = await open(backends.sqlite)
      await source.query('CREATE TABLE log (at integer, message text)')
      const runner = new RuleRunner(
        { name: 'keyless_refused', source: 'a', target: 'b', mode: 'cdc', collections: ['log'] },
        source,
        target,
      )
      const error = await expectReplicatorError(runner.sync(), 'TYPE_UNSUPPORTED')
      expect(error.message).toMatch(/REPLICA IDENTITY FULL/)
    },
  )

  it.skipIf(!backends.mariadb.serverUrl)(
    'mariadb: a keyless table is refused while the binary log does not log whole rows',
    async () => {
      const source = await open(backends.mariadb)
      const target = await open(backends.sqlite)
      await source.query('CREATE TABLE log (at integer, message text)')
      await source.query("SET GLOBAL binlog_row_image = 'NOBLOB'")
      try {
        const runner = new RuleRunner(
          { name: 'keyless_noblob', source: 'a', target: 'b', mode: 'cdc', collections: ['log'] },
          source,
          target,
        )
        const error = await expectReplicatorError(runner.sync(), 'TYPE_UNSUPPORTED')
        expect(error.message).toMatch(/binlog_row_image/)
      } finally {
        await source.query("SET GLOBAL binlog_row_image = 'FULL'")
      }
    },
  )
})

import '@mostajs/replicator-dialect-postgres'
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, scanAll, type Dialect } from '@mostajs/replicator-core'
import { testBackends } from '@mostajs/replicator-testkit/vitest'
import { killRule, killRuleProcesses, startRule, unexpectedExits } from './fixtures/rule-process.js'

// kill -9 of the streaming process at random points while pgbench writes (TPC-B: updates of
// accounts, tellers and branches in one transaction each), across an ADD COLUMN on two tables
// and a TRUNCATE: after a last run the target equals the source, table by table.

const backends = testBackends()
const pgbenchFound = spawnSync('pgbench', ['--version']).status === 0
const required = process.env.REPLICATOR_REQUIRE_BACKENDS === '1'
const TABLES = { pgbench_accounts: 'aid', pgbench_branches: 'bid', pgbench_tellers: 'tid' } as const
afterAll(killRuleProcesses)

/** Row-by-row checksum of each carried table in key order, with its row count. */
async function checksums(dialect: Dialect): Promise<Record<string, { rows: number; sha256: string }>> {
  const sums: Record<string, { rows: number; sha256: string }> = {}
  for (const table of Object.keys(TABLES)) {
    const hash = createHash('sha256')
    let rows = 0
    for await (const page of scanAll(dialect, table, { pageSize: 5000 }))
      for (const row of page) {
        rows++
        hash.update(JSON.stringify(row, (_key, value) => (typeof value === 'bigint' ? value.toString() : value)))
      }
    sums[table] = { rows, sha256: hash.digest('hex') }
  }
  return sums
}

describe.skipIf(!backends.postgres.serverUrl || (!pgbenchFound && !required))(
  'CDC crash recovery under pgbench, across DDL and TRUNCATE (postgres → postgres)',
  () => {
    it('kill -9 at 12 random points: after restart every table of the target equals the source', async () => {
      expect(pgbenchFound, 'pgbench is needed (Debian: postgresql-15)').toBe(true)
      const sourceDb = await backends.postgres.freshDatabase()
      const targetDb = await backends.postgres.freshDatabase()
      const init = spawnSync('pgbench', ['-i', '-s', '1', '-q', sourceDb.uri], { encoding: 'utf8' })
      expect(init.status, init.stderr).toBe(0)
      const source = await connectDialect({ dialect: 'postgres', uri: sourceDb.uri })
      const args = ['postgres', sourceDb.uri, 'postgres', targetDb.uri, 'pgbench_crash', Object.keys(TABLES).join(',')]
      const load = spawn('pgbench', ['-n', '-c', '2', '-T', '600', sourceDb.uri], { stdio: 'ignore' })
      const loadEnded = new Promise((resolve) => load.once('exit', resolve))
      try {
        for (let kill = 0; kill < 12; kill++) {
          const child = await startRule(args)
          await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 700))
          if (kill === 3) {
            await source.query('ALTER TABLE pgbench_accounts ADD COLUMN tag text')
            await source.query("UPDATE pgbench_accounts SET tag = 'late' WHERE aid <= 500")
          }
          if (kill === 6) {
            await source.query('ALTER TABLE pgbench_tellers ADD COLUMN note text')
            await source.query("UPDATE pgbench_tellers SET note = 'noted' WHERE tid <= 5")
          }
          if (kill === 8) {
            await source.query('TRUNCATE pgbench_branches')
            await source.query('INSERT INTO pgbench_branches (bid, bbalance) VALUES (1, 0)')
          }
          await killRule(child)
        }
      } finally {
        load.kill('SIGINT')
        await loadEnded
      }
      const last = await startRule(args)
      const target = await connectDialect({ dialect: 'postgres', uri: targetDb.uri })
      const expected = await checksums(source)
      const deadline = Date.now() + 60_000
      let actual = await checksums(target).catch(() => ({}))
      while (JSON.stringify(actual) !== JSON.stringify(expected) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250))
        actual = await checksums(target).catch(() => ({}))
      }
      await killRule(last)
      expect(unexpectedExits).toEqual([]) // the rule process never died on its own
      expect(expected.pgbench_accounts!.rows).toBe(100_000)
      expect(expected.pgbench_branches!.rows).toBe(1)
      expect(actual).toEqual(expected)
      await target.close()
      await source.capture!.drop('pgbench_crash')
      await source.close()
      await sourceDb.cleanup()
      await targetDb.cleanup()
    }, 300_000)
  },
)

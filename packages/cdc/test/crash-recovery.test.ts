import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, scanAll, type Dialect } from '@mostajs/replicator-core'
import { testBackends } from '@mostajs/replicator-testkit/vitest'

const backends = testBackends()
const script = fileURLToPath(new URL('./fixtures/run-rule.ts', import.meta.url))
const children = new Set<ChildProcess>()
const exits: string[] = []
afterAll(() => { for (const child of children) child.kill('SIGKILL') })

/** Starts the rule in a child process and resolves once it is prepared. */
function startRule(args: string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.add(child)
    let errors = ''
    child.stderr!.on('data', (chunk) => { errors += chunk })
    child.stdout!.on('data', (chunk) => { if (String(chunk).includes('ready')) resolve(child) })
    child.on('exit', (code, signal) => {
      children.delete(child)
      if (signal !== 'SIGKILL') {
        exits.push(`rule process exited (${code}): ${errors.slice(-2000)}`)
        reject(new Error(exits[exits.length - 1]))
      }
    })
  })
}

/** Row-by-row checksum of a table in key order, with the row count. */
async function checksum(dialect: Dialect): Promise<{ rows: number; sha256: string }> {
  const hash = createHash('sha256')
  let rows = 0
  for await (const page of scanAll(dialect, 'accounts', { pageSize: 500 })) {
    for (const row of page) { rows++; hash.update(JSON.stringify(row, (_key, value) => (typeof value === 'bigint' ? value.toString() : value))) }
  }
  return { rows, sha256: hash.digest('hex') }
}

describe.skipIf(!backends.postgres.serverUrl)(`CDC crash recovery${backends.postgres.serverUrl ? '' : ` (skipped: ${backends.postgres.skipReason})`}`, () => {
  it('kill -9 of the streaming process at 20 random points under write load: after restart the target equals the source', async () => {
    const sourceDb = await backends.postgres.freshDatabase()
    const targetDb = await backends.sqlite.freshDatabase()
    const source = await connectDialect({ dialect: 'postgres', uri: sourceDb.uri })
    await source.ensureCollection({ name: 'accounts', columns: [{ name: 'id', type: 'integer' }, { name: 'balance', type: 'bigint' }, { name: 'note', type: 'string' }, { name: 'at', type: 'timestamp' }], primaryKey: ['id'] })
    await source.upsertMany('accounts', Array.from({ length: 300 }, (_, i) => ({ id: i, balance: 0n, note: 'seed', at: new Date() })))
    const args = ['postgres', sourceDb.uri, 'sqlite', targetDb.uri, 'crash_test']
    let writing = true
    let writes = 0
    // Steady writes: inserts, updates of random rows (a running balance), deletes.
    const load = (async () => {
      while (writing) {
        const id = Math.floor(Math.random() * 400)
        const roll = Math.random()
        if (roll < 0.15) await source.delete('accounts', { id })
        else if (roll < 0.5) await source.upsertMany('accounts', [{ id, balance: BigInt(writes), note: `w${writes}`, at: new Date() }])
        else await source.update('accounts', { id }, { $inc: { balance: 1 }, $set: { note: `inc${writes}` } })
        writes++
      }
    })()
    try {
      for (let kill = 0; kill < 20; kill++) {
        const child = await startRule(args)
        await new Promise((resolve) => setTimeout(resolve, 30 + Math.random() * 250))
        child.kill('SIGKILL')
        await new Promise((resolve) => child.once('exit', resolve))
      }
    } finally {
      writing = false
      await load
    }
    // One last run to the end of the captured changes, then compare.
    const last = await startRule(args)
    const target = await connectDialect({ dialect: 'sqlite', uri: targetDb.uri })
    const expected = await checksum(source)
    const deadline = Date.now() + 30_000
    let actual = await checksum(target)
    while (actual.sha256 !== expected.sha256 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      actual = await checksum(target)
    }
    last.kill('SIGKILL')
    if (actual.sha256 !== expected.sha256) {
      const sourceRows = await source.find('accounts', {}, { sort: { id: 1 } })
      const targetRows = await target.find('accounts', {}, { sort: { id: 1 } })
      const inSource = new Set(sourceRows.map((row) => row.id))
      console.log('DIAG offsets', await target.find('_replicator_offsets'), 'slot', await source.query('SELECT confirmed_flush_lsn::text AS c, restart_lsn::text AS r FROM pg_replication_slots'))
      const [slot] = await source.query<{ slot_name: string }>(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'replicator_crash_test%'`)
      console.log('DIAG wal', await source.query('SELECT pg_current_wal_lsn()::text AS lsn'), 'pending', await source.query(`SELECT count(*)::int AS n FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`, [slot!.slot_name, slot!.slot_name]))
      console.log('DIAG extra in target', targetRows.filter((row) => !inSource.has(row.id)).slice(0, 5))
    }
    expect(exits).toEqual([]) // the rule process never died on its own
    expect(writes).toBeGreaterThan(100)
    expect(actual).toEqual(expected)
    await target.close()
    await source.dropCapture!('crash_test')
    expect(await source.query(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'replicator_crash_test%'`)).toEqual([])
    await source.close()
  }, 240_000) // 21 rule processes started one after the other: slow when the machine is busy
})

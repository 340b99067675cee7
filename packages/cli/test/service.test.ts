import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, type Dialect, type Row } from '@mostajs/replicator'
import { freePort, startPostgres, startPostgresStandby, type RunningPostgres } from '@mostajs/replicator-testkit'
import { privateServer, runScript, waitFor } from '@mostajs/replicator-testkit/vitest'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const { available, skipNote } = privateServer('postgres')

/** The service as a user starts it: `mostajs-replicator run`, in its own process. */
function startService(
  tree: string,
  env: Record<string, string> = {},
): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', cli, 'run', '--tree', tree], {
    env: { ...process.env, REPLICATOR_INTERVAL_MS: '50', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout!.on('data', (chunk) => {
    output += chunk
  })
  child.stderr!.on('data', (chunk) => {
    output += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return { child, output: () => output, exited }
}

async function allRows(dialect: Dialect): Promise<Row[]> {
  return dialect.find('orders', {}, { sort: { id: 1 } })
}

describe.skipIf(!available)(
  `the replicator service (spawned) on a PostgreSQL source and a SQLite target${skipNote}`,
  () => {
    let server: RunningPostgres
    let source: Dialect
    let target: Dialect
    let dir = ''
    let tree = ''
    let targetUri = ''

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'replicator-service-')) // here, not at collection: a filtered run skips afterAll
      tree = join(dir, 'tree.json')
      targetUri = `sqlite:${join(dir, 'analytics.db')}`
      server = await startPostgres()
      const sourceUri = await server.createDatabase('shop')
      source = await connectDialect({ dialect: 'postgres', uri: sourceUri })
      await source.ensureCollection({
        name: 'orders',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'qty', type: 'integer' },
          { name: 'note', type: 'string' },
        ],
        primaryKey: ['id'],
      })
      await source.upsertMany(
        'orders',
        Array.from({ length: 300 }, (_, index) => ({ id: index + 1, qty: 0, note: 'initial' })),
      )
      target = await connectDialect({ dialect: 'sqlite', uri: targetUri })
      writeFileSync(
        tree,
        JSON.stringify(
          {
            version: 1,
            replicas: {
              shop: [{ name: 'primary', role: 'master', dialect: 'postgres', uri: '${SERVICE_TEST_SOURCE}' }],
              analytics: [{ name: 'main', role: 'master', dialect: 'sqlite', uri: targetUri }],
            },
            rules: [
              {
                name: 'orders-cdc',
                source: 'shop',
                target: 'analytics',
                mode: 'cdc',
                collections: ['orders'],
                batchSize: 50,
              },
            ],
          },
          null,
          2,
        ),
      )
      process.env.SERVICE_TEST_SOURCE = sourceUri
    })

    afterAll(async () => {
      delete process.env.SERVICE_TEST_SOURCE
      await target?.close()
      await source?.close()
      await server?.stop()
      if (dir) rmSync(dir, { recursive: true, force: true })
    })

    it('killed with SIGKILL mid-stream and restarted, 5 times under a write load: the target ends equal to the source', async () => {
      let writing = true
      let writes = 0
      const load = (async () => {
        while (writing) {
          const id = 1 + Math.floor(Math.random() * 400)
          await source.transaction(async (tx) => {
            if (Math.random() < 0.2) await tx.deleteMany('orders', [id])
            else
              await tx.upsertMany('orders', [
                { id, qty: writes, note: `write ${writes}` },
                { id: 401 + (writes % 100), qty: writes, note: 'hot row' },
              ])
          })
          writes++
        }
      })()
      try {
        for (let kill = 0; kill < 5; kill++) {
          const service = startService(tree)
          await waitFor(() => /streaming rule orders-cdc/.test(service.output()), 30_000, `service start ${kill + 1}`)
          await new Promise((resolve) => setTimeout(resolve, 200 + Math.random() * 1200))
          service.child.kill('SIGKILL')
          await service.exited
        }
      } finally {
        writing = false
        await load
      }
      expect(writes).toBeGreaterThan(50)
      const expected = await allRows(source)
      const service = startService(tree)
      try {
        await waitFor(
          async () => JSON.stringify(await allRows(target)) === JSON.stringify(expected),
          60_000,
          'target equal to source after the restarts',
        )
      } finally {
        service.child.kill('SIGTERM')
        expect(await service.exited).toBe(0)
      }
      expect(await allRows(target)).toEqual(expected)
    })

    it('an unreachable master: /health turns 503 and `status` reports it down while the service keeps running; both recover when it is back', async () => {
      const port = await freePort()
      const service = startService(tree, { REPLICATOR_HTTP_PORT: String(port) })
      const url = `http://127.0.0.1:${port}`
      const health = async () => (await fetch(`${url}/health`).catch(() => null))?.status ?? 0
      try {
        await waitFor(async () => (await health()) === 200, 30_000, '/health 200')
        await server.halt!()
        try {
          await waitFor(async () => (await health()) === 503, 30_000, '/health 503 while the master is down')
          const shopState = async () =>
            ((await (await fetch(`${url}/api/replicas`)).json()) as Array<{ project: string; state: string }>).find(
              (replica) => replica.project === 'shop',
            )?.state
          await waitFor(
            async () => (await shopState()) === 'down',
            30_000,
            'the master shown down (after failed health checks)',
          )
          const report = (await (await fetch(`${url}/health`)).json()) as { reasons: string[] }
          expect(report.reasons.join('\n')).toMatch(/master primary is unhealthy/)
          const status = await runScript(cli, ['status', '--tree', tree, '--json', '--wait', '1500'])
          expect(status.code).toBe(1)
          const shown = JSON.parse(status.stdout) as {
            replicas: Array<{ project: string; healthy: boolean; uri: string }>
          }
          expect(shown.replicas.find((replica) => replica.project === 'shop')).toMatchObject({ healthy: false })
          expect(service.child.exitCode).toBeNull() // still running
        } finally {
          await server.resume!()
        }
        await waitFor(async () => (await health()) === 200, 60_000, '/health 200 once the master is back')
        await source.upsertMany('orders', [{ id: 9999, qty: 1, note: 'after the outage' }])
        await waitFor(
          async () => (await target.findOne('orders', { id: 9999 }))?.note === 'after the outage',
          60_000,
          'a change made after the outage arrives',
        )
        // `status` adds the running service's counters to what it reads from the targets
        const withService = (
          await runScript(cli, ['status', '--tree', tree, '--json', '--wait', '0', '--service', url])
        ).stdout
        const [rule] = (
          JSON.parse(withService) as {
            rules: Array<{
              name: string
              streaming: boolean
              stats: { recordsSynced: number }
              progress: { deadLetters: number }
            }>
          }
        ).rules
        expect(rule).toMatchObject({ name: 'orders-cdc', streaming: true, progress: { deadLetters: 0 } })
        expect(rule!.stats.recordsSynced).toBeGreaterThan(0)
      } finally {
        service.child.kill('SIGTERM')
        expect(await service.exited).toBe(0)
      }
      expect(service.output()).not.toContain('password')
    })
  },
)

describe.skipIf(!available)(`mostajs-replicator promote on a PostgreSQL master and a native standby${skipNote}`, () => {
  let master: RunningPostgres
  let standby: RunningPostgres
  let standbyAdmin: Dialect
  let dir = ''
  let tree = ''

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'replicator-promote-'))
    tree = join(dir, 'tree.json')
    master = await startPostgres()
    const masterUri = await master.createDatabase('shop')
    standby = await startPostgresStandby(master)
    const standbyUri = Object.assign(new URL(masterUri), { port: String(standby.port) }).toString()
    standbyAdmin = await connectDialect({ dialect: 'postgres', uri: standbyUri })
    writeFileSync(
      tree,
      JSON.stringify(
        {
          version: 1,
          replicas: {
            shop: [
              { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri },
              { name: 'standby', role: 'slave', dialect: 'postgres', uri: standbyUri, lagTolerance: 300 },
            ],
          },
        },
        null,
        2,
      ),
    )
  })

  afterAll(async () => {
    await standbyAdmin?.close()
    await standby?.stop()
    await master?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('refuses (exit 1, LAG_TOO_HIGH) while the standby lags and leaves the tree as it was; promotes once it caught up', async () => {
    await standbyAdmin.query('SELECT pg_wal_replay_pause()')
    const before = readFileSync(tree, 'utf8')
    try {
      const refused = await runScript(cli, ['promote', 'shop', 'standby', '--tree', tree])
      expect(refused.code).toBe(1)
      expect(refused.stderr).toMatch(/LAG_TOO_HIGH: shop\/standby is/)
      expect(refused.stderr).not.toContain(new URL(JSON.parse(before).replicas.shop[0].uri).password)
      expect(readFileSync(tree, 'utf8')).toBe(before)
    } finally {
      await standbyAdmin.query('SELECT pg_wal_replay_resume()')
    }
    const promoted = await runScript(cli, ['promote', 'shop', 'standby', '--tree', tree, '--json'])
    // the tree was a version 1 file: saving it back says so, and keeps it
    expect(promoted.stderr).toBe(
      `${tree} rewritten from version 1 to version 2; the old file is kept at ${tree}.v1.bak\n`,
    )
    expect(readFileSync(`${tree}.v1.bak`, 'utf8')).toBe(before)
    expect(promoted.code).toBe(0)
    expect(JSON.parse(promoted.stdout)).toMatchObject({
      project: 'shop',
      promoted: 'standby',
      previousMaster: 'primary',
      forced: false,
      possibleDataLoss: null,
    })
    const saved = JSON.parse(readFileSync(tree, 'utf8')) as {
      replicas: { shop: Record<string, { role: string; fenced?: boolean }> }
    }
    const replicas = Object.entries(saved.replicas.shop)
    expect(replicas.map(([name, replica]) => [name, replica.role, replica.fenced ?? false])).toEqual([
      ['primary', 'slave', true],
      ['standby', 'master', false],
    ])
  })
})

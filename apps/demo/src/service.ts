/**
 * The replicator as a service: scaffolds `services/replicator.mjs` into a temp project, writes
 * its tree file (URIs as ${ENV} references), runs it as its own process with the status
 * endpoint on, writes to the master, then reads /health, /api/rules and /metrics.
 *
 *   pnpm demo:service [--keep]
 */
import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { connectDialect, type Dialect } from '@mostajs/replicator'
import { scaffoldReplicatorService } from '@mostajs/replicator/service'
import { freePort, sqliteFile, startPostgres } from '@mostajs/replicator-testkit'

const { values: options } = parseArgs({ options: { keep: { type: 'boolean', default: false } } })
const say = (text: string) => console.log(text)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

const cleanups: Array<() => Promise<void>> = []
try {
  say('▸ starting an embedded PostgreSQL (shop) and a SQLite file (analytics)…')
  const postgres = await startPostgres()
  if (!options.keep) cleanups.push(() => postgres.stop())
  const shopUri = await postgres.createDatabase('shop')
  const analytics = sqliteFile('analytics.db')
  if (!options.keep) cleanups.push(async () => analytics.cleanup())
  const shop: Dialect = await connectDialect({ dialect: 'postgres', uri: shopUri })
  cleanups.push(() => shop.close())
  await shop.ensureCollection({
    name: 'orders',
    columns: [
      { name: 'id', type: 'integer' },
      { name: 'total', type: 'decimal' },
      { name: 'placedAt', type: 'timestamp' },
    ],
    primaryKey: ['id'],
  })

  // a project of the user's: inside this app, so it resolves @mostajs/replicator like an install would
  const project = await mkdtemp(join(fileURLToPath(new URL('..', import.meta.url)), '.service-demo-'))
  if (!options.keep) cleanups.push(() => rm(project, { recursive: true, force: true }))
  const scaffolded = await scaffoldReplicatorService({ dir: project })
  say(`▸ scaffolded ${scaffolded.path.slice(project.length + 1)} (thin: it loads .env and calls runReplicatorService)`)
  await mkdir(join(project, '.mostajs'), { recursive: true })
  await writeFile(
    join(project, '.mostajs', 'replicator-tree.json'),
    JSON.stringify(
      {
        version: 1,
        replicas: {
          shop: [{ name: 'primary', role: 'master', dialect: 'postgres', uri: '${SHOP_DATABASE_URL}' }],
          analytics: [{ name: 'main', role: 'master', dialect: 'sqlite', uri: analytics.uri }],
        },
        rules: [
          {
            name: 'orders-to-analytics',
            source: 'shop',
            target: 'analytics',
            mode: 'cdc',
            collections: ['orders'],
            conflictResolution: 'source-wins',
          },
        ],
      },
      null,
      2,
    ),
  )
  const port = await freePort()
  await writeFile(
    join(project, '.env'),
    `SHOP_DATABASE_URL=${shopUri}\nREPLICATOR_HTTP_PORT=${port}\nREPLICATOR_INTERVAL_MS=100\n`,
    { mode: 0o600 },
  )
  say('▸ wrote .mostajs/replicator-tree.json (the URI is ${SHOP_DATABASE_URL}, from .env) and started the service:')

  const service = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'services/replicator.mjs'], {
    cwd: project,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const stopService = async () => {
    if (service.exitCode !== null) return
    const exited = new Promise((resolve) => service.once('close', resolve))
    service.kill('SIGTERM')
    await exited
  }
  cleanups.push(stopService)
  let partial = ''
  service.stdout.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n')
    partial = lines.pop()!
    for (const line of lines) say(`    │ ${line}`)
  })
  const base = `http://127.0.0.1:${port}`
  await waitFor(async () => (await fetch(`${base}/health`)).status === 200, 'the service to be healthy')
  // its first sync (the snapshot of the empty table) is done: what follows is streamed from the WAL
  await waitFor(
    async () =>
      ((await (await fetch(`${base}/api/rules`)).json()) as Array<{ stats: { lastSync: string | null } }>)[0]?.stats
        .lastSync != null,
    'the first sync',
  )

  const rows = Array.from({ length: 500 }, (_, index) => ({
    id: index + 1,
    total: `${(index * 3.5).toFixed(2)}`,
    placedAt: new Date(),
  }))
  await shop.upsertMany('orders', rows)
  await shop.deleteMany('orders', [1, 2])
  const copy = await connectDialect({ dialect: 'sqlite', uri: analytics.uri })
  cleanups.push(() => copy.close())
  await waitFor(async () => (await copy.count('orders')) === 498, 'the orders to reach analytics')
  say(`▸ wrote 500 orders and deleted 2 on PostgreSQL; analytics (SQLite) holds ${await copy.count('orders')}`)

  const health = await fetch(`${base}/health`)
  say(`\n▸ GET /health → ${health.status} ${await health.text()}`)
  const rules = (await (await fetch(`${base}/api/rules`)).json()) as Array<{
    name: string
    streaming: boolean
    stats: Record<string, unknown>
  }>
  for (const rule of rules)
    say(
      `▸ GET /api/rules → ${rule.name}: streaming ${rule.streaming}, inserted ${rule.stats.inserted}, updated ${rule.stats.updated}, deleted ${rule.stats.deleted}, failed ${rule.stats.failed}, lag ${rule.stats.lagMs} ms`,
    )
  const metrics = await (await fetch(`${base}/metrics`)).text()
  say('▸ GET /metrics (the replicator_ series):')
  for (const line of metrics.split('\n'))
    if (
      /^replicator_(replica_lag|replica_healthy|rule_events|capture_retained|apply_duration_seconds_count)/.test(line)
    )
      say(`    ${line}`)

  await stopService()
  say(`\n▸ SIGTERM: the service stopped cleanly (exit code ${service.exitCode})`)
  if (options.keep) say(`--keep: project at ${project}`)
  if (service.exitCode !== 0) process.exitCode = 1
} finally {
  for (const step of cleanups.reverse()) await step().catch(() => undefined)
}

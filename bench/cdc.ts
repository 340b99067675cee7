/**
 * bench:cdc — change data capture against its references, in the same run:
 *  1. PostgreSQL → PostgreSQL streaming: catch-up of a backlog of row changes, rows/s applied,
 *     vs native logical replication (CREATE PUBLICATION / CREATE SUBSCRIPTION), alternating,
 *     median of --rounds rounds each (the first of ours includes JIT warm-up). Target ≥ 0.5×.
 *  2. End-to-end lag (source commit → visible on target), p50/p99, at a steady 2,000 rows/s.
 *     Target p99 < 250 ms.
 *  3. Snapshot of 1,000,000 rows PostgreSQL → PostgreSQL vs `COPY … TO STDOUT | COPY … FROM STDIN`
 *     (psql). Target ≤ 1.5× its time, peak RSS < 300 MB.
 *  4. PostgreSQL → SQLite and MariaDB → PostgreSQL streaming rows/s (reported).
 * Writes bench/results/cdc.json.
 *
 *   pnpm bench:cdc [--rows 100000] [--rounds 3] [--snapshot-rows 1000000] [--lag-seconds 10] [--only streaming,lag,snapshot,cross]
 * A run of some sections only updates theirs in the results file.
 */
import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { connectDialect, type CollectionSchema, type Dialect } from '@mostajs/replicator-core'
import { RuleRunner } from '@mostajs/replicator-cdc'
import {
  createMariaDBDatabase,
  findExecutable,
  mariadbAvailability,
  sqliteFile,
  startMariaDB,
  startPostgres,
} from '@mostajs/replicator-testkit'
import { machineInfo } from './machine.js'

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '3' },
    'snapshot-rows': { type: 'string', default: '1000000' },
    'lag-seconds': { type: 'string', default: '10' },
    only: { type: 'string' },
  },
})
const SECTIONS = ['streaming', 'lag', 'snapshot', 'cross'] as const
const only = args.only ? args.only.split(',').map((name) => name.trim()) : [...SECTIONS]
for (const name of only)
  if (!(SECTIONS as readonly string[]).includes(name))
    throw new Error(`--only: unknown section "${name}" (one of ${SECTIONS.join(', ')})`)
const wanted = (section: (typeof SECTIONS)[number]) => only.includes(section)
const ROWS = Number(args.rows)
const ROUNDS = Math.max(1, Number(args.rounds))
const SNAPSHOT_ROWS = Number(args['snapshot-rows'])
const LAG_SECONDS = Number(args['lag-seconds'])
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const table = (name: string): CollectionSchema => ({
  name,
  primaryKey: ['id'],
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'name', type: 'string' },
    { name: 'amount', type: 'decimal', precision: 18, scale: 4 },
    { name: 'score', type: 'double' },
    { name: 'active', type: 'boolean' },
    { name: 'created', type: 'timestamp' },
    { name: 'tags', type: 'json' },
    { name: 'note', type: 'text' },
  ],
})

/** Server-side generation of `count` rows starting at `from` (one statement: the load itself is not measured). */
function generateSql(name: string, from: number, count: number): string {
  return `INSERT INTO "${name}" SELECT g, 'user-' || g, (g % 100000) + 0.25, g / 7.0, g % 3 = 0, now(), jsonb_build_object('g', g % 10), repeat('n', 40)
          FROM generate_series(${from}, ${from + count - 1}) g`
}

async function waitForCount(dialect: Dialect, name: string, count: number, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await dialect.count(name)) < count) {
    if (Date.now() > deadline) throw new Error(`${name} never reached ${count} rows`)
    await sleep(20)
  }
}

/**
 * Catch-up of a captured backlog: rows/s applied by our rule runner. As with the native
 * subscription (created disabled), nothing reads the capture while the load is written: the
 * runner that set it up is closed, and a new one on a new connection catches up, timed.
 */
async function oursCatchUp(
  openSource: () => Promise<Dialect>,
  target: Dialect,
  name: string,
  load: () => Promise<void>,
): Promise<number> {
  const config = {
    name: `bench_${name}`,
    source: 's',
    target: 't',
    mode: 'cdc' as const,
    collections: [name],
    batchSize: 2000,
  }
  const setupSource = await openSource()
  const setup = new RuleRunner(config, setupSource, target)
  await setup.prepare()
  await setup.sync() // empty snapshot; the capture starts here
  await setup.release() // a stopped process hands the rule over at once
  await setupSource.close()
  await load()
  const source = await openSource()
  try {
    const runner = new RuleRunner(config, source, target)
    await runner.prepare()
    const started = performance.now()
    await runner.sync()
    const seconds = (performance.now() - started) / 1000
    if ((await target.count(name)) !== ROWS) throw new Error('rows missing on the target')
    await runner.teardown()
    return ROWS / seconds
  } finally {
    await source.close()
  }
}

const results: Record<string, unknown> = {}
const stops: Array<() => Promise<void>> = []
try {
  const sourceServer = await startPostgres()
  stops.push(() => sourceServer.stop())
  const targetServer = await startPostgres()
  stops.push(() => targetServer.stop())
  const sourceUri = await sourceServer.createDatabase('source')
  const targetUri = await targetServer.createDatabase('target')
  const source = await connectDialect({ dialect: 'postgres', uri: sourceUri })
  const target = await connectDialect({ dialect: 'postgres', uri: targetUri })
  stops.push(async () => {
    await source.close()
    await target.close()
  })

  if (wanted('streaming')) {
    // 1. streaming catch-up vs native logical replication, alternating, ROUNDS rounds each
    const batches = async (name: string) => {
      for (let from = 1; from <= ROWS; from += 1000)
        await source.query(generateSql(name, from, Math.min(1000, ROWS - from + 1)))
    }
    const sourceUrl = new URL(sourceUri)
    const nativeRound = async (round: number): Promise<number> => {
      const name = `native_${round}`
      await source.ensureCollection(table(name))
      await target.ensureCollection(table(name))
      await source.query(`CREATE PUBLICATION ${name}_pub FOR TABLE ${name}`)
      await target.query(
        `CREATE SUBSCRIPTION ${name}_sub CONNECTION 'host=127.0.0.1 port=${sourceUrl.port} dbname=source user=postgres password=${decodeURIComponent(sourceUrl.password)}' PUBLICATION ${name}_pub WITH (copy_data = false, enabled = false)`,
      )
      await batches(name)
      const started = performance.now()
      await target.query(`ALTER SUBSCRIPTION ${name}_sub ENABLE`)
      await waitForCount(target, name, ROWS)
      const rate = ROWS / ((performance.now() - started) / 1000)
      await target.query(`ALTER SUBSCRIPTION ${name}_sub DISABLE`)
      await target.query(`ALTER SUBSCRIPTION ${name}_sub SET (slot_name = NONE)`)
      await target.query(`DROP SUBSCRIPTION ${name}_sub`)
      await source.query(`SELECT pg_drop_replication_slot('${name}_sub')`).catch(() => undefined)
      return rate
    }
    const nativeRates: number[] = []
    const oursRates: number[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      nativeRates.push(await nativeRound(round))
      await source.ensureCollection(table(`ours_${round}`))
      await target.ensureCollection(table(`ours_${round}`))
      oursRates.push(
        await oursCatchUp(
          () => connectDialect({ dialect: 'postgres', uri: sourceUri }),
          target,
          `ours_${round}`,
          () => batches(`ours_${round}`),
        ),
      )
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
    results.streaming = {
      rows: ROWS,
      transactionsOf: 1000,
      rounds: ROUNDS,
      oursRowsPerSecond: Math.round(median(oursRates)),
      nativeRowsPerSecond: Math.round(median(nativeRates)),
      ratio: Number((median(oursRates) / median(nativeRates)).toFixed(3)),
      oursRounds: oursRates.map(Math.round),
      nativeRounds: nativeRates.map(Math.round),
      target: '≥ 0.5 (medians)',
    }
  }

  if (wanted('lag')) {
    // 2. end-to-end lag at a steady 2,000 rows/s
    await source.ensureCollection(table('lag_t'))
    const runner = new RuleRunner(
      { name: 'bench_lag', source: 's', target: 't', mode: 'cdc', collections: ['lag_t'], batchSize: 1000 },
      source,
      target,
    )
    await runner.prepare()
    await runner.sync()
    let streaming = true
    const streamer = (async () => {
      while (streaming) {
        await runner.sync()
        await sleep(2)
      }
    })()
    const committedAt = new Map<number, number>()
    const lags: number[] = []
    let writing = true
    const writer = (async () => {
      let id = 1
      const begin = performance.now()
      while (writing) {
        // 20 rows every 10 ms = 2,000 rows/s, one transaction each
        await source.query(generateSql('lag_t', id, 20))
        const now = performance.now()
        for (let i = 0; i < 20; i++) committedAt.set(id + i, now)
        id += 20
        const due = begin + ((id - 1) / 2000) * 1000
        await sleep(Math.max(0, due - performance.now()))
      }
      return id - 1
    })()
    const reader = (async () => {
      let seen = 0
      while (writing || seen < committedAt.size) {
        const [row] = await target.query<{ max: number | null }>('SELECT max(id) AS max FROM lag_t')
        const now = performance.now()
        const max = Number(row?.max ?? 0)
        for (let id = seen + 1; id <= max; id++) {
          const at = committedAt.get(id)
          if (at !== undefined) lags.push(now - at)
        }
        seen = Math.max(seen, max)
        await sleep(2)
      }
    })()
    await sleep(LAG_SECONDS * 1000)
    writing = false
    const written = await writer
    await reader
    streaming = false
    await streamer
    await runner.teardown()
    lags.sort((a, b) => a - b)
    const percentile = (p: number) => Math.round(lags[Math.min(lags.length - 1, Math.floor(lags.length * p))]!)
    results.lag = {
      rowsPerSecond: 2000,
      seconds: LAG_SECONDS,
      rows: written,
      measured: lags.length,
      p50Ms: percentile(0.5),
      p99Ms: percentile(0.99),
      maxMs: Math.round(lags[lags.length - 1]!),
      target: 'p99 < 250 ms',
    }
  }

  if (wanted('snapshot')) {
    // 3. snapshot of SNAPSHOT_ROWS rows vs COPY | COPY
    await source.ensureCollection(table('snap_t'))
    for (let from = 1; from <= SNAPSHOT_ROWS; from += 100_000)
      await source.query(generateSql('snap_t', from, Math.min(100_000, SNAPSHOT_ROWS - from + 1)))
    await target.ensureCollection(table('snap_copy'))
    const psql = findExecutable('psql')
    let copyMs: number | null = null
    let started: number
    if (psql) {
      const targetCopyUri = targetUri
      started = performance.now()
      await new Promise<void>((resolve, reject) => {
        const pipe = spawn(
          'bash',
          [
            '-c',
            `"${psql}" "${sourceUri}" -qc "COPY snap_t TO STDOUT" | "${psql}" "${targetCopyUri}" -qc "COPY snap_copy FROM STDIN"`,
          ],
          { stdio: 'inherit' },
        )
        pipe.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`COPY pipe exited with ${code}`))))
      })
      copyMs = performance.now() - started
      if ((await target.count('snap_copy')) !== SNAPSHOT_ROWS) throw new Error('COPY lost rows')
    }
    let peakRss = process.memoryUsage().rss
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss)
    }, 50)
    const snapshotRunner = new RuleRunner(
      { name: 'bench_snapshot', source: 's', target: 't', mode: 'cdc', collections: ['snap_t'], batchSize: 5000 },
      source,
      target,
    )
    started = performance.now()
    await snapshotRunner.prepare()
    await snapshotRunner.sync()
    const oursSnapshotMs = performance.now() - started
    clearInterval(sampler)
    await snapshotRunner.teardown()
    if ((await target.count('snap_t')) !== SNAPSHOT_ROWS) throw new Error('snapshot lost rows')
    results.snapshot = {
      rows: SNAPSHOT_ROWS,
      oursMs: Math.round(oursSnapshotMs),
      copyPipeMs: copyMs === null ? null : Math.round(copyMs),
      ratio: copyMs === null ? null : Number((oursSnapshotMs / copyMs).toFixed(2)),
      peakRssMB: Math.round(peakRss / 2 ** 20),
      target: '≤ 1.5× COPY, peak RSS < 300 MB',
    }
  }

  if (wanted('cross')) {
    // 4. cross-dialect streaming rates
    const file = sqliteFile('bench-cdc.db')
    stops.push(async () => file.cleanup())
    const sqlite = await connectDialect({ dialect: 'sqlite', uri: file.uri })
    stops.push(() => sqlite.close())
    await source.ensureCollection(table('to_sqlite'))
    const toSqlite = await oursCatchUp(
      () => connectDialect({ dialect: 'postgres', uri: sourceUri }),
      sqlite,
      'to_sqlite',
      async () => {
        for (let from = 1; from <= ROWS; from += 1000)
          await source.query(generateSql('to_sqlite', from, Math.min(1000, ROWS - from + 1)))
      },
    )
    const cross: Record<string, number> = { 'postgres → sqlite rows/s': Math.round(toSqlite) }
    if (mariadbAvailability().available) {
      const mariadbServer = await startMariaDB()
      stops.push(() => mariadbServer.stop())
      const mariadbUri = (await createMariaDBDatabase(mariadbServer.url, 'bench')).replace(/^mysql:/, 'mariadb:')
      const mariadb = await connectDialect({ dialect: 'mariadb', uri: mariadbUri })
      stops.push(() => mariadb.close())
      await mariadb.ensureCollection(table('from_mariadb'))
      const rows = Array.from({ length: 1000 }, (_, i) => i)
      const fromMariadb = await oursCatchUp(
        () => connectDialect({ dialect: 'mariadb', uri: mariadbUri }),
        target,
        'from_mariadb',
        async () => {
          for (let from = 1; from <= ROWS; from += 1000) {
            await mariadb.upsertMany(
              'from_mariadb',
              rows.slice(0, Math.min(1000, ROWS - from + 1)).map((i) => ({
                id: from + i,
                name: `user-${from + i}`,
                amount: '1.25',
                score: i / 7,
                active: i % 3 === 0,
                created: new Date(),
                tags: { g: i % 10 },
                note: 'n'.repeat(40),
              })),
            )
          }
        },
      )
      cross['mariadb → postgres rows/s'] = Math.round(fromMariadb)
    }
    results.crossDialect = cross
  }
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined)
}

const machine = machineInfo()
console.log(`\nbench:cdc — machine: ${machine.cpu} × ${machine.cores}, node ${machine.node}\n`)
if (results.streaming) {
  const { oursRounds, nativeRounds, ...medians } = results.streaming as Record<string, unknown>
  console.log('1. PostgreSQL → PostgreSQL streaming (backlog catch-up, medians):')
  console.table([medians])
  console.log(`   rounds, rows/s: ours ${String(oursRounds)}; native ${String(nativeRounds)}`)
}
if (results.lag) {
  console.log('2. end-to-end lag at 2,000 rows/s:')
  console.table([results.lag])
}
if (results.snapshot) {
  console.log('3. snapshot vs COPY | COPY:')
  console.table([results.snapshot])
}
if (results.crossDialect) {
  console.log('4. cross-dialect streaming:')
  console.table([results.crossDialect])
}
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
const resultsFile = new URL('./results/cdc.json', import.meta.url)
const earlier =
  args.only && existsSync(resultsFile) ? (JSON.parse(readFileSync(resultsFile, 'utf8')) as Record<string, unknown>) : {}
writeFileSync(
  resultsFile,
  `${JSON.stringify({ ...earlier, benchmark: 'cdc', date: new Date().toISOString(), machine, ...results }, null, 2)}\n`,
)

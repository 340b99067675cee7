/**
 * bench:dialects — upsertMany of 100,000 rows (batches of 1,000, 8 columns of mixed types)
 * and a full keyset scan, for each dialect, against the raw driver running the same
 * multi-row statements in the same process, batch by batch in alternation. Scans are also
 * compared with the raw driver plus the conversions that give the same values as ours
 * (booleans, Dates, parsed JSON). Prints ours/raw time ratios (target ≤ 1.25) and writes
 * bench/results/dialects.json.
 *
 *   pnpm bench:dialects [--rows 100000] [--batch 1000] [--rounds 5] [--only postgres,mariadb,sqlite]
 */
import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { mkdirSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import Database from 'better-sqlite3'
import mysql from 'mysql2/promise'
import pg from 'pg'
import { createDialect, type CollectionSchema, type Dialect, type Row } from '@mostajs/replicator-core'
import {
  createMariaDBDatabase,
  mariadbAvailability,
  postgresAvailability,
  sqliteFile,
  startMariaDB,
  startPostgres,
} from '@mostajs/replicator-testkit'
import { machineInfo } from './machine.js'

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '5' },
    only: { type: 'string' },
  },
})
const wanted = (name: string) => !args.only || args.only.split(',').includes(name)
const ROWS = Number(args.rows)
const BATCH = Number(args.batch)
const ROUNDS = Number(args.rounds)

const COLUMNS = ['id', 'name', 'amount', 'score', 'active', 'created', 'tags', 'note'] as const
function schema(name: string): CollectionSchema {
  return {
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
  }
}

const rows: Row[] = Array.from({ length: ROWS }, (_, i) => ({
  id: i + 1,
  name: `user-${i}`,
  amount: `${(i * 37) % 100000}.${String(i % 10000).padStart(4, '0')}`,
  score: ((i * 7919) % 1000) / 7,
  active: i % 3 === 0,
  created: new Date(1_700_000_000_000 + i * 1000),
  tags: { group: i % 10, labels: ['a', `b${i % 5}`] },
  note: i % 4 === 0 ? null : `note ${i} `.repeat(3),
}))

/** The raw driver of one database, doing by hand what a developer would write. */
interface RawDriver {
  upsertBatch(table: string, batch: Row[]): Promise<void>
  /**
   * A keyset scan whose next() reads one page and returns its row count (0 at the end).
   * With `convert`, each row is also turned into the values ours returns (booleans, Dates,
   * parsed JSON), as a developer using the raw driver would have to.
   */
  pages(table: string, convert: boolean): { next(): Promise<number> }
  truncate(table: string): Promise<void>
  close(): Promise<void>
}

function pgRaw(uri: string): RawDriver {
  const pool = new pg.Pool({ connectionString: uri, max: 4 })
  const sqlCache = new Map<number, string>()
  return {
    async upsertBatch(table, batch) {
      let sql = sqlCache.get(batch.length)
      if (!sql) {
        const tuples = batch.map((_, r) => `(${COLUMNS.map((_, c) => `$${r * COLUMNS.length + c + 1}`).join(', ')})`)
        sql = `INSERT INTO "${table}" (${COLUMNS.map((c) => `"${c}"`).join(', ')}) VALUES ${tuples.join(', ')} ON CONFLICT ("id") DO UPDATE SET ${COLUMNS.slice(
          1,
        )
          .map((c) => `"${c}" = EXCLUDED."${c}"`)
          .join(', ')}`
        sqlCache.set(batch.length, sql)
      }
      const params: unknown[] = []
      for (const row of batch)
        params.push(
          row.id,
          row.name,
          row.amount,
          row.score,
          row.active,
          row.created,
          JSON.stringify(row.tags),
          row.note,
        )
      await pool.query(sql, params)
    },
    pages(table) {
      // pg already returns booleans, Dates and parsed JSON: nothing to convert
      let after = 0
      let done = false
      return {
        async next() {
          if (done) return 0
          const { rows: page } = await pool.query(
            `SELECT * FROM "${table}" WHERE "id" > $1 ORDER BY "id" LIMIT ${BATCH}`,
            [after],
          )
          done = page.length < BATCH
          if (page.length) after = page[page.length - 1].id
          return page.length
        },
      }
    },
    async truncate(table) {
      await pool.query(`TRUNCATE "${table}"`)
    },
    close: () => pool.end(),
  }
}

function mysqlRaw(uri: string): RawDriver {
  const url = new URL(uri)
  const pool = mysql.createPool({
    host: url.hostname,
    port: Number(url.port),
    user: url.username,
    database: url.pathname.slice(1),
    connectionLimit: 4,
    timezone: 'Z',
    supportBigNumbers: true,
    bigNumberStrings: true,
  })
  const sqlCache = new Map<number, string>()
  return {
    async upsertBatch(table, batch) {
      let sql = sqlCache.get(batch.length)
      if (!sql) {
        const tuple = `(${COLUMNS.map(() => '?').join(', ')})`
        sql = `INSERT INTO \`${table}\` (${COLUMNS.map((c) => `\`${c}\``).join(', ')}) VALUES ${batch.map(() => tuple).join(', ')} ON DUPLICATE KEY UPDATE ${COLUMNS.slice(
          1,
        )
          .map((c) => `\`${c}\` = VALUES(\`${c}\`)`)
          .join(', ')}`
        sqlCache.set(batch.length, sql)
      }
      const params: unknown[] = []
      for (const row of batch)
        params.push(
          row.id,
          row.name,
          row.amount,
          row.score,
          row.active,
          row.created,
          JSON.stringify(row.tags),
          row.note,
        )
      await pool.query(sql, params)
    },
    pages(table, convert) {
      let after = 0
      let done = false
      return {
        async next() {
          if (done) return 0
          const [page] = (await pool.query(
            `SELECT * FROM \`${table}\` WHERE \`id\` > ? ORDER BY \`id\` LIMIT ${BATCH}`,
            [after],
          )) as [Array<Record<string, unknown> & { id: number }>, unknown]
          if (convert)
            for (const row of page) {
              row.active = row.active === null ? null : row.active !== 0
              row.tags = typeof row.tags === 'string' ? JSON.parse(row.tags) : row.tags
            }
          done = page.length < BATCH
          if (page.length) after = page[page.length - 1]!.id
          return page.length
        },
      }
    },
    async truncate(table) {
      await pool.query(`TRUNCATE \`${table}\``)
    },
    close: () => pool.end(),
  }
}

function sqliteRaw(path: string): RawDriver {
  const database = new Database(path)
  database.pragma('journal_mode = WAL')
  database.pragma('synchronous = NORMAL')
  const statements = new Map<string, Database.Statement>()
  const prepare = (sql: string) => {
    let statement = statements.get(sql)
    if (!statement) statements.set(sql, (statement = database.prepare(sql)))
    return statement
  }
  return {
    async upsertBatch(table, batch) {
      const tuple = `(${COLUMNS.map(() => '?').join(', ')})`
      const sql = `INSERT INTO "${table}" (${COLUMNS.map((c) => `"${c}"`).join(', ')}) VALUES ${batch.map(() => tuple).join(', ')} ON CONFLICT ("id") DO UPDATE SET ${COLUMNS.slice(
        1,
      )
        .map((c) => `"${c}" = excluded."${c}"`)
        .join(', ')}`
      const params: unknown[] = []
      for (const row of batch)
        params.push(
          row.id,
          row.name,
          row.amount,
          row.score,
          row.active ? 1 : 0,
          (row.created as Date).toISOString(),
          JSON.stringify(row.tags),
          row.note,
        )
      prepare(sql).run(params)
    },
    pages(table, convert) {
      const statement = prepare(`SELECT * FROM "${table}" WHERE "id" > ? ORDER BY "id" LIMIT ${BATCH}`)
      let after = 0
      let done = false
      return {
        async next() {
          if (done) return 0
          const page = statement.all(after) as Array<Record<string, unknown> & { id: number }>
          if (convert) {
            for (const row of page) {
              row.active = row.active === null ? null : row.active !== 0
              row.created = row.created === null ? null : new Date(row.created as string)
              row.tags = row.tags === null ? null : JSON.parse(row.tags as string)
            }
          }
          done = page.length < BATCH
          if (page.length) after = page[page.length - 1]!.id
          return page.length
        },
      }
    },
    async truncate(table) {
      database.exec(`DELETE FROM "${table}"`)
    },
    async close() {
      database.close()
    },
  }
}

/** Scans a whole table page by page, timing each page with `clock`. */
interface PagedScan {
  next(): Promise<boolean>
}

function oursScanner(dialect: Dialect, table: string): PagedScan {
  let after: unknown = null
  let done = false
  return {
    async next() {
      if (done) return false
      const page = await dialect.scan(table, { after, limit: BATCH })
      after = page.next
      done = after === null
      return page.rows.length > 0
    },
  }
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await fn()
  return performance.now() - started
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

interface Result {
  dialect: string
  operation: string
  rows: number
  oursMs: number
  rawMs: number
  ratio: number
  /** Raw driver plus the conversions to the same values ours returns (scans only). */
  rawConvertedMs?: number
  ratioVsConverted?: number
  oursRowsPerSecond: number
  rawRowsPerSecond: number
}

async function benchmark(label: string, dialect: Dialect, raw: RawDriver, emptySql: string): Promise<Result[]> {
  await dialect.ensureCollection(schema('bench_ours'))
  await dialect.ensureCollection(schema('bench_raw'))
  const upsert = { ours: [] as number[], raw: [] as number[] }
  const scan = { ours: [] as number[], raw: [] as number[], converted: [] as number[] }
  // warm-up: statement caches, JIT, buffer pools
  await dialect.upsertMany('bench_ours', rows.slice(0, BATCH))
  await raw.upsertBatch('bench_raw', rows.slice(0, BATCH))
  // Both sides advance batch by batch, alternating who goes first: on a noisy machine, drift
  // and pauses then fall on both sides alike.
  for (let round = 0; round < ROUNDS; round++) {
    await dialect.query(emptySql.replace('$table', 'bench_ours'))
    await raw.truncate('bench_raw')
    let oursMs = 0
    let rawMs = 0
    for (let start = 0, index = 0; start < rows.length; start += BATCH, index++) {
      const batch = rows.slice(start, start + BATCH)
      const runRaw = async () => {
        rawMs += await time(() => raw.upsertBatch('bench_raw', batch))
      }
      const runOurs = async () => {
        oursMs += await time(() => dialect.upsertMany('bench_ours', batch))
      }
      if ((index + round) % 2 === 0) {
        await runRaw()
        await runOurs()
      } else {
        await runOurs()
        await runRaw()
      }
    }
    upsert.ours.push(oursMs)
    upsert.raw.push(rawMs)
    oursMs = 0
    rawMs = 0
    let convertedMs = 0
    const ours = oursScanner(dialect, 'bench_ours')
    const rawPages = raw.pages('bench_raw', false)
    const convertedPages = raw.pages('bench_raw', true)
    let rawRows = 0
    for (let index = 0; ; index++) {
      let more = false
      const sides = [
        async () => {
          oursMs += await time(async () => {
            if (await ours.next()) more = true
          })
        },
        async () => {
          rawMs += await time(async () => {
            const count = await rawPages.next()
            rawRows += count
            if (count) more = true
          })
        },
        async () => {
          convertedMs += await time(async () => {
            if (await convertedPages.next()) more = true
          })
        },
      ]
      for (let turn = 0; turn < sides.length; turn++) await sides[(index + round + turn) % sides.length]!()
      if (!more) break
    }
    const oursRows = await dialect.count('bench_ours')
    if (oursRows !== ROWS || rawRows !== ROWS) throw new Error(`lost rows: ours ${oursRows}, raw ${rawRows}`)
    scan.converted.push(convertedMs)
    scan.ours.push(oursMs)
    scan.raw.push(rawMs)
  }
  const result = (operation: string, samples: { ours: number[]; raw: number[]; converted?: number[] }): Result => {
    const oursMs = median(samples.ours)
    const rawMs = median(samples.raw)
    const convertedMs = samples.converted ? median(samples.converted) : undefined
    return {
      dialect: label,
      operation,
      rows: ROWS,
      oursMs: Math.round(oursMs),
      rawMs: Math.round(rawMs),
      ratio: Number((oursMs / rawMs).toFixed(3)),
      ...(convertedMs !== undefined
        ? { rawConvertedMs: Math.round(convertedMs), ratioVsConverted: Number((oursMs / convertedMs).toFixed(3)) }
        : {}),
      oursRowsPerSecond: Math.round(ROWS / (oursMs / 1000)),
      rawRowsPerSecond: Math.round(ROWS / (rawMs / 1000)),
    }
  }
  return [result(`upsertMany (batches of ${BATCH})`, upsert), result(`scan (pages of ${BATCH})`, scan)]
}

async function main() {
  const results: Result[] = []
  const skipped: string[] = []
  const stops: Array<() => Promise<void>> = []
  try {
    if (!wanted('postgres')) skipped.push('postgres: not selected')
    else if (postgresAvailability().available) {
      const server = await startPostgres()
      stops.push(() => server.stop())
      const uri = await server.createDatabase('bench')
      const dialect = createDialect({ dialect: 'postgres', uri })
      await dialect.connect()
      const raw = pgRaw(uri)
      results.push(...(await benchmark('postgres', dialect, raw, 'TRUNCATE "$table"')))
      await raw.close()
      await dialect.close()
    } else skipped.push(`postgres: ${postgresAvailability().reason}`)

    if (!wanted('mariadb')) skipped.push('mariadb: not selected')
    else if (mariadbAvailability().available) {
      const server = await startMariaDB()
      stops.push(() => server.stop())
      const uri = await createMariaDBDatabase(server.url, 'bench')
      const dialect = createDialect({ dialect: 'mariadb', uri })
      await dialect.connect()
      const raw = mysqlRaw(uri)
      results.push(...(await benchmark('mariadb', dialect, raw, 'TRUNCATE `$table`')))
      await raw.close()
      await dialect.close()
    } else skipped.push(`mariadb: ${mariadbAvailability().reason}`)

    if (wanted('sqlite')) {
      // one file each, so WAL checkpoints of one side never land on the other
      const file = sqliteFile('bench-ours.db')
      const rawFile = sqliteFile('bench-raw.db')
      stops.push(async () => {
        file.cleanup()
        rawFile.cleanup()
      })
      const dialect = createDialect({ dialect: 'sqlite', uri: file.uri })
      await dialect.connect()
      const raw = sqliteRaw(rawFile.path)
      await dialect.ensureCollection(schema('bench_raw'))
      const rawSide = createDialect({ dialect: 'sqlite', uri: rawFile.uri })
      await rawSide.connect()
      await rawSide.ensureCollection(schema('bench_raw')) // same DDL as ours
      await rawSide.close()
      results.push(...(await benchmark('sqlite', dialect, raw, 'DELETE FROM "$table"')))
      await raw.close()
      await dialect.close()
    } else skipped.push('sqlite: not selected')
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined)
  }

  const machine = machineInfo()
  console.log(
    `\nbench:dialects — ${ROWS.toLocaleString('en')} rows, 8 columns, batch ${BATCH}, median of ${ROUNDS} rounds`,
  )
  console.log(`machine: ${machine.cpu} × ${machine.cores}, ${machine.memoryGiB} GiB, node ${machine.node}\n`)
  console.table(
    results.map((r) => ({
      dialect: r.dialect,
      operation: r.operation,
      'ours ms': r.oursMs,
      'raw ms': r.rawMs,
      'ours/raw': r.ratio,
      'raw+convert ms': r.rawConvertedMs ?? '',
      'ours/(raw+convert)': r.ratioVsConverted ?? '',
      'ours rows/s': r.oursRowsPerSecond,
    })),
  )
  for (const reason of skipped) console.log(`skipped ${reason}`)
  // Judged against raw code that returns the same values (for scans: raw + conversions);
  // the ratio against the raw driver's untouched output is printed beside it.
  const worst = Math.max(...results.map((r) => r.ratioVsConverted ?? r.ratio))
  const worstVsRaw = Math.max(...results.map((r) => r.ratio))
  console.log(
    `worst ratio vs raw code producing the same values: ${worst.toFixed(3)} (target ≤ 1.25) → ${worst <= 1.25 ? 'PASS' : 'FAIL'}`,
  )
  console.log(`worst ratio vs the raw driver's untouched output: ${worstVsRaw.toFixed(3)}`)
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
  writeFileSync(
    new URL('./results/dialects.json', import.meta.url),
    `${JSON.stringify({ benchmark: 'dialects', date: new Date().toISOString(), machine, rows: ROWS, batch: BATCH, rounds: ROUNDS, target: 1.25, worstRatio: worst, worstRatioVsUntouchedRaw: worstVsRaw, results, skipped }, null, 2)}\n`,
  )
}

await main()

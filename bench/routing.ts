/**
 * bench:routing — (1) cost of `resolveReadService` with 1, 3 and 10 eligible slaves against a
 * plain array pick in the same run (target < 1 µs per call); (2) 10,000 primary-key reads
 * through the routed EntityService against the raw `pg` driver on the same PostgreSQL standby
 * (target ≥ 0.9× raw throughput). Writes bench/results/routing.json.
 *
 *   pnpm bench:routing [--calls 1000000] [--reads 10000] [--concurrency 8]
 */
import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { mkdirSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import pg from 'pg'
import {
  connectDialect,
  HEARTBEAT_COLLECTION,
  HEARTBEAT_SCHEMA,
  ReplicationManager,
  type Dialect,
  type EntityService,
} from '@mostajs/replicator'
import {
  postgresAvailability,
  sqliteFile,
  startPostgres,
  startPostgresStandby,
  type TempSqliteFile,
} from '@mostajs/replicator-testkit'
import { machineInfo } from './machine.js'

const { values: args } = parseArgs({
  options: {
    calls: { type: 'string', default: '1000000' },
    reads: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '8' },
  },
})
const CALLS = Number(args.calls)
const READS = Number(args.reads)
const CONCURRENCY = Number(args.concurrency)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Feeds the master's heartbeat row into SQLite "managed" slaves, as the CDC engine would. */
async function relayHeartbeats(master: Dialect, slaves: Dialect[], until: () => boolean): Promise<void> {
  while (!until()) {
    const rows = await master.find(HEARTBEAT_COLLECTION)
    for (const slave of slaves) {
      // the managed feeds write the same rows into the slaves: a busy file is retried next tick
      try {
        await slave.ensureCollection(HEARTBEAT_SCHEMA)
        if (rows.length) await slave.upsertMany(HEARTBEAT_COLLECTION, rows)
      } catch (error) {
        if ((error as { details?: { driverCode?: string } }).details?.driverCode !== 'SQLITE_BUSY') throw error
      }
    }
    await sleep(20)
  }
}

interface PickResult {
  slaves: number
  routedNsPerCall: number
  plainNsPerCall: number
  ratio: number
}

async function routingCost(slaveCount: number): Promise<PickResult> {
  const files: TempSqliteFile[] = []
  const manager = new ReplicationManager(null, { heartbeatIntervalMs: 20, healthCheckIntervalMs: 1000 })
  let done = false
  try {
    const masterFile = sqliteFile('master.db')
    files.push(masterFile)
    await manager.addReplica('bench', { name: 'master', role: 'master', dialect: 'sqlite', uri: masterFile.uri })
    const slaveDialects: Dialect[] = []
    for (let i = 0; i < slaveCount; i++) {
      const file = sqliteFile(`slave${i}.db`)
      files.push(file)
      await manager.addReplica('bench', {
        name: `s${i}`,
        role: 'slave',
        dialect: 'sqlite',
        uri: file.uri,
        replication: 'managed',
        lagTolerance: 60_000,
      })
      slaveDialects.push(await connectDialect({ dialect: 'sqlite', uri: file.uri }))
    }
    const masterDialect = await connectDialect({ dialect: 'sqlite', uri: masterFile.uri })
    const relay = relayHeartbeats(masterDialect, slaveDialects, () => done)
    const deadline = Date.now() + 10_000
    while (!manager.getReplicaStatus('bench').every((replica) => replica.status === 'healthy')) {
      if (Date.now() > deadline) throw new Error('slaves never became eligible')
      await sleep(20)
    }
    done = true
    await relay
    manager.setReadRouting('bench', 'round-robin')
    const plain: EntityService[] = []
    for (let i = 0; i < slaveCount; i++) plain.push(manager.resolveReadService('bench'))
    let sink = 0
    const time = (fn: () => void) => {
      const started = process.hrtime.bigint()
      fn()
      return Number(process.hrtime.bigint() - started) / CALLS
    }
    // warm-up, then alternate the two loops three times and keep the best of each
    const routed: number[] = []
    const array: number[] = []
    for (let round = 0; round < 4; round++) {
      array.push(
        time(() => {
          for (let i = 0; i < CALLS; i++) if (plain[i % plain.length] === undefined) sink++
        }),
      )
      routed.push(
        time(() => {
          for (let i = 0; i < CALLS; i++) if (manager.resolveReadService('bench') === undefined) sink++
        }),
      )
    }
    if (sink) console.log(sink)
    const routedNs = Math.min(...routed.slice(1))
    const plainNs = Math.min(...array.slice(1))
    for (const dialect of [...slaveDialects, masterDialect]) await dialect.close()
    return {
      slaves: slaveCount,
      routedNsPerCall: Number(routedNs.toFixed(1)),
      plainNsPerCall: Number(plainNs.toFixed(2)),
      ratio: Number((routedNs / plainNs).toFixed(1)),
    }
  } finally {
    done = true
    await manager.disconnectAll()
    for (const file of files) file.cleanup()
  }
}

interface ReadResult {
  concurrency: number
  reads: number
  routedReadsPerSecond: number
  rawReadsPerSecond: number
  ratio: number
}

async function readWorkload(): Promise<ReadResult[]> {
  const master = await startPostgres()
  const results: ReadResult[] = []
  try {
    const uri = await master.createDatabase('bench')
    const setup = await connectDialect({ dialect: 'postgres', uri })
    await setup.ensureCollection({
      name: 'items',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'label', type: 'string' },
        { name: 'price', type: 'double' },
        { name: 'tags', type: 'json' },
      ],
      primaryKey: ['id'],
    })
    for (let start = 0; start < READS; start += 1000) {
      await setup.upsertMany(
        'items',
        Array.from({ length: 1000 }, (_, i) => ({
          id: start + i,
          label: `item ${start + i}`,
          price: (start + i) / 7,
          tags: { n: i },
        })),
      )
    }
    await setup.close()
    const standby = await startPostgresStandby(master)
    const standbyUri = new URL(uri)
    standbyUri.port = String(standby.port)
    const manager = new ReplicationManager(null, { heartbeatIntervalMs: 250 })
    const raw = new pg.Pool({ connectionString: standbyUri.toString(), max: 10 })
    try {
      await manager.addReplica('bench', { name: 'primary', role: 'master', dialect: 'postgres', uri })
      await manager.addReplica('bench', {
        name: 'standby',
        role: 'slave',
        dialect: 'postgres',
        uri: standbyUri.toString(),
        lagTolerance: 5000,
      })
      const deadline = Date.now() + 15_000
      while (manager.getReplicaStatus('bench').some((replica) => replica.status !== 'healthy')) {
        if (Date.now() > deadline) throw new Error('standby never became eligible')
        await sleep(25)
      }
      const ids = Array.from({ length: READS }, (_, i) => (i * 7919) % READS)
      const routedRead = (id: number) => manager.resolveReadService('bench').findById('items', id)
      const rawRead = async (id: number) =>
        (await raw.query('SELECT * FROM "items" WHERE "id" = $1 LIMIT 1', [id])).rows[0]
      for (const concurrency of [1, CONCURRENCY]) {
        // Chunks of 250 reads, alternating routed and raw (and who goes first): drift on a
        // noisy machine falls on both sides alike.
        const chunk = async (read: (id: number) => Promise<unknown>, from: number) => {
          let next = from
          const end = Math.min(from + 250, ids.length)
          const started = performance.now()
          await Promise.all(
            Array.from({ length: concurrency }, async () => {
              while (next < end) {
                const row = await read(ids[next++]!)
                if (!row) throw new Error('missing row')
              }
            }),
          )
          return performance.now() - started
        }
        await chunk(routedRead, 0)
        await chunk(rawRead, 0) // warm-up
        let routedMs = 0
        let rawMs = 0
        for (let round = 0; round < 3; round++) {
          for (let from = 0, index = 0; from < ids.length; from += 250, index++) {
            if ((index + round) % 2 === 0) {
              rawMs += await chunk(rawRead, from)
              routedMs += await chunk(routedRead, from)
            } else {
              routedMs += await chunk(routedRead, from)
              rawMs += await chunk(rawRead, from)
            }
          }
        }
        const routedRate = (3 * ids.length) / (routedMs / 1000)
        const rawRate = (3 * ids.length) / (rawMs / 1000)
        results.push({
          concurrency,
          reads: READS,
          routedReadsPerSecond: Math.round(routedRate),
          rawReadsPerSecond: Math.round(rawRate),
          ratio: Number((routedRate / rawRate).toFixed(3)),
        })
      }
    } finally {
      await raw.end()
      await manager.disconnectAll()
      await standby.stop()
    }
  } finally {
    await master.stop()
  }
  return results
}

const picks: PickResult[] = []
for (const count of [1, 3, 10]) picks.push(await routingCost(count))
const reads = postgresAvailability().available ? await readWorkload() : []
const machine = machineInfo()
console.log(`\nbench:routing — machine: ${machine.cpu} × ${machine.cores}, node ${machine.node}\n`)
console.log(`resolveReadService (${CALLS.toLocaleString('en')} calls, best of 3) vs a plain array pick:`)
console.table(
  picks.map((p) => ({
    slaves: p.slaves,
    'routed ns/call': p.routedNsPerCall,
    'array pick ns/call': p.plainNsPerCall,
    'ratio routed/plain': p.ratio,
  })),
)
console.log(
  `primary-key reads through the routed service vs raw pg, same standby (3 passes, interleaved in chunks of 250):`,
)
console.table(
  reads.map((r) => ({
    concurrency: r.concurrency,
    reads: r.reads,
    'routed reads/s': r.routedReadsPerSecond,
    'raw reads/s': r.rawReadsPerSecond,
    'routed/raw': r.ratio,
  })),
)
const worstNs = Math.max(...picks.map((p) => p.routedNsPerCall))
const worstRead = reads.length ? Math.min(...reads.map((r) => r.ratio)) : NaN
console.log(`resolveReadService worst: ${worstNs} ns/call (target < 1000) → ${worstNs < 1000 ? 'PASS' : 'FAIL'}`)
console.log(`read throughput worst: ${worstRead}× raw (target ≥ 0.9) → ${worstRead >= 0.9 ? 'PASS' : 'FAIL'}`)
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(
  new URL('./results/routing.json', import.meta.url),
  `${JSON.stringify({ benchmark: 'routing', date: new Date().toISOString(), machine, calls: CALLS, picks, reads, targets: { nsPerCall: 1000, readRatio: 0.9 } }, null, 2)}\n`,
)

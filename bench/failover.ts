/**
 * bench:failover — automatic failover time. Each round: a private PostgreSQL master with two
 * synchronous standbys, three application instances, each its own process (managers sharing a
 * topology in a private 3-member etcd cluster, `autoFailover` on), writing in a loop; the
 * master is SIGKILLed. Measured per round: kill → the coordinator's promotion, kill → the
 * slowest instance's first write acknowledged by the new master, and acknowledged writes
 * missing from the new master (must be 0). p50/p99 over the rounds, beside the published defaults of
 * other failover systems (Patroni: TTL 30 s; Aurora: 30–60 s). Writes bench/results/failover.json
 * (failover-mariadb.json).
 *
 * `--dialect mariadb`: a MariaDB master with one semi-synchronous replica instead.
 *
 *   pnpm bench:failover [--kills 20] [--dialect postgres|mariadb]
 */
import '@mostajs/replicator-dialect-postgres'
import { mkdirSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { connectDialect } from '@mostajs/replicator'
import '@mostajs/replicator-dialect-mysql'
import {
  createMariaDBDatabase,
  startEtcdCluster,
  startMariaDB,
  startMariaDBReplica,
  startPostgres,
  startPostgresStandby,
} from '@mostajs/replicator-testkit'
import { startInstance, type Instance } from '../packages/replicator/test/fixtures/instances.js'
import { machineInfo } from './machine.js'

const { values: args } = parseArgs({
  options: { kills: { type: 'string', default: '20' }, dialect: { type: 'string', default: 'postgres' } },
})
const KILLS = Number(args.kills)
const DIALECT = args.dialect === 'mariadb' ? 'mariadb' : 'postgres'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

/**
 * One kill: returns [ms to the promotion, ms to the slowest instance's first write on the new
 * master, acknowledged writes missing from the new master].
 */
/** A master and its standbys, synchronous (PostgreSQL `ANY n`, MariaDB semi-sync), with an `orders` table. */
interface Cluster {
  dialect: string
  masterUri: string
  masterPort: number
  standbyUris: string[]
  kill(): Promise<void>
  stop(): Promise<void>
}

const uriOnPort = (uri: string, port: number) => {
  const url = new URL(uri)
  url.port = String(port)
  return url.toString()
}
const orders = {
  name: 'orders',
  columns: [
    { name: 'id', type: 'integer' as const },
    { name: 'by', type: 'string' as const },
  ],
  primaryKey: ['id'],
}

async function postgresCluster(): Promise<Cluster> {
  const master = await startPostgres()
  const masterUri = await master.createDatabase('shop')
  const standbys = [await startPostgresStandby(master), await startPostgresStandby(master)]
  const admin = await connectDialect({ dialect: 'postgres', uri: masterUri })
  await admin.ensureCollection(orders)
  // synchronous to both standbys: an acknowledged write is on whichever is promoted
  await admin.query("ALTER SYSTEM SET synchronous_standby_names = 'ANY 2 (*)'")
  await admin.query('SELECT pg_reload_conf()')
  await admin.close()
  return {
    dialect: 'postgres',
    masterUri,
    masterPort: master.port,
    standbyUris: standbys.map((standby) => uriOnPort(masterUri, standby.port)),
    kill: () => master.kill!(),
    stop: async () => {
      for (const standby of standbys) await standby.stop()
      await master.stop()
    },
  }
}

async function mariadbCluster(): Promise<Cluster> {
  const master = await startMariaDB()
  const masterUri = (await createMariaDBDatabase(master.url, 'shop')).replace(/^mysql:/, 'mariadb:')
  // semi-synchronous: an acknowledged commit is in the replica's relay log
  const replica = await startMariaDBReplica(master, { semiSync: true })
  const replicaUri = uriOnPort(masterUri, replica.port)
  const admin = await connectDialect({ dialect: 'mariadb', uri: masterUri })
  await admin.ensureCollection(orders)
  await admin.close()
  return {
    dialect: 'mariadb',
    masterUri,
    masterPort: master.port,
    standbyUris: [replicaUri],
    kill: () => master.kill!(),
    stop: async () => {
      await replica.stop()
      await master.stop()
    },
  }
}

async function round(endpoints: string[], index: number): Promise<[number, number, number]> {
  const cluster = DIALECT === 'mariadb' ? await mariadbCluster() : await postgresCluster()
  const { masterUri, standbyUris, dialect } = cluster
  const instances: Instance[] = []
  try {
    const prefix = `/bench-failover-${process.pid}-${index}`
    for (const [at, name] of ['a', 'b', 'c'].entries())
      instances.push(
        await startInstance({ name, endpoints, prefix, masterUri, standbyUris, dialect, firstId: at * 1_000_000 + 1 }),
      )
    /** The instance's acknowledged writes, with when each was heard of. */
    const acks = (instance: Instance) =>
      instance.lines.flatMap((line, position) =>
        line.startsWith('ack ') ? [{ line, at: instance.arrivals[position]! }] : [],
      )
    await waitUntil(() => instances.every((instance) => acks(instance).length >= 20), 60_000, 'every instance writes')
    const killedAt = Date.now()
    await cluster.kill()
    const onNewMaster = (instance: Instance) =>
      acks(instance).find(({ at, line }) => at > killedAt && !line.endsWith(` ${cluster.masterPort}`))
    await waitUntil(() => instances.every((instance) => onNewMaster(instance)), 30_000, 'writes on the new master')
    const promotionAt = (instance: Instance) => {
      const position = instance.lines.findIndex((line) => line.startsWith('promoted '))
      return position < 0
        ? null
        : { promoted: instance.lines[position]!.split(' ')[1]!, at: instance.arrivals[position]! }
    }
    const promotion = instances.map(promotionAt).find((found) => found !== null)!
    const newMaster = await connectDialect({ dialect, uri: standbyUris[promotion.promoted === 's1' ? 0 : 1]! })
    // the writes acknowledged before the read starts must all be there; the instances keep
    // writing meanwhile, and an ack heard after the read began is of a row it may not see
    const acknowledged = instances.flatMap((instance) => acks(instance))
    const stored = new Set((await newMaster.find('orders')).map((row) => Number(row.id)))
    await newMaster.close()
    const lost = acknowledged.filter(({ line }) => !stored.has(Number(line.split(' ')[1])))
    return [
      promotion.at - killedAt,
      Math.max(...instances.map((instance) => onNewMaster(instance)!.at - killedAt)),
      lost.length,
    ]
  } finally {
    for (const { child } of instances) child.kill('SIGKILL')
    await cluster.stop()
  }
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

const etcd = await startEtcdCluster(3)
const promotions: number[] = []
const resumes: number[] = []
let lostWrites = 0
try {
  for (let index = 0; index < KILLS; index++) {
    const [promoted, resumed, lost] = await round(etcd.endpoints, index)
    promotions.push(promoted)
    resumes.push(resumed)
    lostWrites += lost
    process.stdout.write(
      `kill ${index + 1}/${KILLS}: promoted after ${promoted} ms, writes resumed after ${resumed} ms, acknowledged writes lost: ${lost}\n`,
    )
  }
} finally {
  await etcd.stop()
}
const machine = machineInfo()
const summary = {
  dialect: DIALECT,
  kills: KILLS,
  promotionP50Ms: percentile(promotions, 50),
  promotionP99Ms: percentile(promotions, 99),
  writesResumeP50Ms: percentile(resumes, 50),
  writesResumeP99Ms: percentile(resumes, 99),
  acknowledgedWritesLost: lostWrites,
}
console.log(`\nbench:failover — machine: ${machine.cpu} × ${machine.cores}, node ${machine.node}\n`)
console.table([summary])
const anchors = [
  { system: 'Patroni (default ttl 30 s)', seconds: 30 },
  { system: 'Amazon Aurora (documented 30–60 s)', seconds: 30 },
]
console.table(
  anchors.map((anchor) => ({
    reference: anchor.system,
    'reference s': anchor.seconds,
    'ours p99 s': summary.writesResumeP99Ms / 1000,
    'reference / ours': Number(((anchor.seconds * 1000) / summary.writesResumeP99Ms).toFixed(1)),
  })),
)
console.log(
  `writes resumed p99: ${summary.writesResumeP99Ms} ms (target < 5000) → ${summary.writesResumeP99Ms < 5000 ? 'PASS' : 'FAIL'}`,
)
console.log(`acknowledged writes lost: ${lostWrites} (target 0) → ${lostWrites === 0 ? 'PASS' : 'FAIL'}`)
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(
  new URL(`./results/failover${DIALECT === 'mariadb' ? '-mariadb' : ''}.json`, import.meta.url),
  `${JSON.stringify({ benchmark: 'failover', date: new Date().toISOString(), machine, ...summary, promotions, resumes, anchors }, null, 2)}\n`,
)

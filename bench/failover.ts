/**
 * bench:failover — automatic failover time. Each round: a private PostgreSQL master with a
 * synchronous standby, two application instances (managers sharing a topology in a private
 * 3-member etcd cluster, `autoFailover` on) writing in a loop; the master is SIGKILLed. Measured
 * per round: kill → the coordinator's promotion, and kill → the slowest instance's first write
 * acknowledged by the new master. p50/p99 over the rounds, beside the published defaults of
 * other failover systems (Patroni: TTL 30 s; Aurora: 30–60 s). Writes bench/results/failover.json.
 *
 *   pnpm bench:failover [--kills 20]
 */
import '@mostajs/replicator-dialect-postgres'
import { mkdirSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { connectDialect, ReplicationManager } from '@mostajs/replicator'
import { EtcdTopologyStore } from '@mostajs/replicator-store-etcd'
import { startEtcdCluster, startPostgres, startPostgresStandby } from '@mostajs/replicator-testkit'
import { machineInfo } from './machine.js'

const { values: args } = parseArgs({ options: { kills: { type: 'string', default: '20' } } })
const KILLS = Number(args.kills)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

/** One kill: returns [ms to the promotion, ms to the slowest instance's first write on the new master]. */
async function round(endpoints: string[], index: number): Promise<[number, number]> {
  const master = await startPostgres()
  const masterUri = await master.createDatabase('shop')
  const standby = await startPostgresStandby(master)
  const standbyUrl = new URL(masterUri)
  standbyUrl.port = String(standby.port)
  const admin = await connectDialect({ dialect: 'postgres', uri: masterUri })
  await admin.ensureCollection({
    name: 'orders',
    columns: [{ name: 'id', type: 'integer' }],
    primaryKey: ['id'],
  })
  await admin.query("ALTER SYSTEM SET synchronous_standby_names = '*'")
  await admin.query('SELECT pg_reload_conf()')
  await admin.close()
  const stores: EtcdTopologyStore[] = []
  const managers: ReplicationManager[] = []
  let promotedAt = 0
  try {
    for (const name of ['a', 'b']) {
      const store = new EtcdTopologyStore({ endpoints, prefix: `/bench-failover-${process.pid}-${index}` })
      stores.push(store)
      const manager = new ReplicationManager(null, {
        heartbeatIntervalMs: 50,
        healthCheckIntervalMs: 200,
        failureThreshold: 3,
        connectTimeoutMs: 1000,
        heartbeatId: name,
        topologyStore: store,
        autoFailover: { coordinatorLeaseMs: 3000 },
      })
      manager.on('error', () => undefined)
      manager.on('failover.automatic', () => (promotedAt = Date.now()))
      managers.push(manager)
      await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
      await manager.addReplica('shop', {
        name: 'standby',
        role: 'slave',
        dialect: 'postgres',
        uri: standbyUrl.toString(),
        lagTolerance: 1000,
      })
    }
    await waitUntil(
      () => managers.every((manager) => manager.getReplicaStatus('shop').every((r) => r.status === 'healthy')),
      20_000,
      'healthy replicas',
    )
    let writing = true
    let nextId = 1
    const resumedAt: Array<number | null> = managers.map(() => null)
    const writers = managers.map(async (manager, at) => {
      while (writing) {
        try {
          const writer = manager.resolveWriteService('shop')
          await writer.create('orders', { id: nextId++ })
          if (resumedAt[at] === null && !writer.dialect.maskedUri.includes(`:${master.port}/`))
            resumedAt[at] = Date.now()
        } catch {
          // down, or fenced: again
        }
        await sleep(10)
      }
    })
    await sleep(300)
    const killedAt = Date.now()
    await master.kill!()
    await waitUntil(() => resumedAt.every((at) => at !== null), 30_000, 'writes on the new master')
    writing = false
    await Promise.all(writers)
    return [promotedAt - killedAt, Math.max(...resumedAt.map((at) => at! - killedAt))]
  } finally {
    for (const manager of managers) await manager.disconnectAll()
    for (const store of stores) await store.close()
    await standby.stop()
    await master.stop()
  }
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

const cluster = await startEtcdCluster(3)
const promotions: number[] = []
const resumes: number[] = []
try {
  for (let index = 0; index < KILLS; index++) {
    const [promoted, resumed] = await round(cluster.endpoints, index)
    promotions.push(promoted)
    resumes.push(resumed)
    process.stdout.write(
      `kill ${index + 1}/${KILLS}: promoted after ${promoted} ms, writes resumed after ${resumed} ms\n`,
    )
  }
} finally {
  await cluster.stop()
}
const machine = machineInfo()
const summary = {
  kills: KILLS,
  promotionP50Ms: percentile(promotions, 50),
  promotionP99Ms: percentile(promotions, 99),
  writesResumeP50Ms: percentile(resumes, 50),
  writesResumeP99Ms: percentile(resumes, 99),
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
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(
  new URL('./results/failover.json', import.meta.url),
  `${JSON.stringify({ benchmark: 'failover', date: new Date().toISOString(), machine, ...summary, promotions, resumes, anchors }, null, 2)}\n`,
)

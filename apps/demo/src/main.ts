/**
 * A first tour of @mostajs/replicator on embedded databases (nothing to install):
 *
 *   project "shop":      embedded PostgreSQL master + a native PostgreSQL standby
 *                        + a managed SQLite slave (fed by log-based change capture)
 *   project "analytics": SQLite master (+ a managed MariaDB slave when the system has MariaDB)
 *   rule "shop-to-analytics": CDC of users and clients, shop → analytics, source-wins
 *
 * A steady load writes to the master and reads through least-lag routing while a live view
 * shows measured lag and routing shares; half-way the standby is promoted and writes resume
 * on it; at the end every copy is checked equal (row counts and checksums).
 *
 *   pnpm demo [--duration 12] [--rate 200] [--keep]
 */
import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { parseArgs } from 'node:util'
import {
  connectDialect,
  ReplicationManager,
  ReplicatorError,
  type Dialect,
  type EntitySchema,
  type Row,
} from '@mostajs/replicator'
import {
  createMariaDBDatabase,
  mariadbAvailability,
  sqliteFile,
  startMariaDB,
  startPostgres,
  startPostgresStandby,
} from '@mostajs/replicator-testkit'
import { fingerprint } from './fingerprint.js'
import { LiveView } from './live-view.js'
import { startLoad } from './load.js'

const { values: options } = parseArgs({
  options: {
    duration: { type: 'string', default: '12' },
    rate: { type: 'string', default: '200' },
    keep: { type: 'boolean', default: false },
  },
})
const DURATION_MS = Number(options.duration) * 1000
const RATE = Number(options.rate)
if (!(DURATION_MS > 0) || !(RATE > 0)) {
  console.error('--duration (seconds) and --rate (writes per second) must be positive numbers')
  process.exit(2)
}

const User: EntitySchema = {
  name: 'User',
  collection: 'users',
  fields: { email: { type: 'string', required: true }, name: { type: 'string' }, active: { type: 'boolean' } },
  timestamps: true,
}
const Client: EntitySchema = {
  name: 'Client',
  collection: 'clients',
  fields: {
    email: { type: 'string', required: true },
    name: { type: 'string' },
    vip: { type: 'boolean' },
    balance: { type: 'number' },
    profile: { type: 'json' },
  },
  timestamps: true,
}

const say = (text: string) => console.log(text)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const cleanups: Array<() => Promise<void>> = []
let cleaning: Promise<void> | undefined
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const step of cleanups.reverse()) await step().catch(() => undefined)
  })()
  return cleaning
}
// Ctrl-C reaches pnpm, tsx and this process alike, so SIGINT may come twice: clean up once, ignore the rest.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (cleaning) return
    say('\n▸ interrupted: stopping and removing the demo databases…')
    void cleanup().then(() => process.exit(130))
  })
}

try {
  // ---- the databases
  say('▸ starting an embedded PostgreSQL master (logical WAL on)…')
  const master = await startPostgres()
  if (!options.keep) cleanups.push(() => master.stop())
  const masterUri = await master.createDatabase('shop')
  const seed = await connectDialect({ dialect: 'postgres', uri: masterUri })
  for (const schema of [User, Client]) await seed.ensureCollection(schema)
  const clients: Row[] = Array.from({ length: 1000 }, (_, i) => ({
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    email: `client${i}@example.com`,
    name: `Client ${i} — ünïcødé`,
    vip: i % 7 === 0,
    balance: ((i * 37) % 1000) / 4,
    profile: { tier: i % 3, tags: ['seed'] },
    createdAt: new Date(Date.UTC(2025, 0, 1) + i * 60_000),
    updatedAt: null,
  }))
  await seed.upsertMany('clients', clients)
  await seed.close()
  say('▸ starting a native PostgreSQL standby (streaming replication from the master)…')
  const standby = await startPostgresStandby(master)
  if (!options.keep) cleanups.push(() => standby.stop())
  const standbyUri = Object.assign(new URL(masterUri), { port: String(standby.port) }).toString()
  const localFile = sqliteFile('local-replica.db')
  const warehouseFile = sqliteFile('analytics.db')
  if (!options.keep)
    cleanups.push(async () => {
      localFile.cleanup()
      warehouseFile.cleanup()
    })
  let reportsUri: string | null = null
  if (mariadbAvailability().available) {
    say('▸ starting a private MariaDB…')
    const mariadb = await startMariaDB()
    if (!options.keep) cleanups.push(() => mariadb.stop())
    reportsUri = (await createMariaDBDatabase(mariadb.url, 'reports')).replace(/^mysql:/, 'mariadb:')
  } else say(`  (MariaDB left out: ${mariadbAvailability().reason})`)

  // ---- the topology, as an application declares it
  const rm = new ReplicationManager(null, { heartbeatIntervalMs: 100, healthCheckIntervalMs: 500 })
  rm.on('error', () => undefined) // shown in the view (states, write errors) rather than as stack traces
  cleanups.push(() => rm.disconnectAll()) // runs before the servers stop (last in, first out)
  await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri }, [User, Client])
  await rm.addReplica('shop', {
    name: 'standby',
    role: 'slave',
    dialect: 'postgres',
    uri: standbyUri,
    lagTolerance: 500,
  })
  await rm.addReplica('shop', {
    name: 'local',
    role: 'slave',
    dialect: 'sqlite',
    uri: localFile.uri,
    replication: 'managed',
    lagTolerance: 1000,
  })
  rm.setReadRouting('shop', 'least-lag')
  await rm.addReplica('analytics', { name: 'warehouse', role: 'master', dialect: 'sqlite', uri: warehouseFile.uri })
  if (reportsUri)
    await rm.addReplica('analytics', {
      name: 'reports',
      role: 'slave',
      dialect: 'mariadb',
      uri: reportsUri,
      replication: 'managed',
      lagTolerance: 2000,
    })
  await rm.addReplicationRule({
    name: 'shop-to-analytics',
    source: 'shop',
    target: 'analytics',
    mode: 'cdc',
    collections: ['users', 'clients'],
    conflictResolution: 'source-wins',
  })
  await rm.startRule('shop-to-analytics', { intervalMs: 100 })
  say(
    `▸ ReplicationManager: shop = primary (postgres) + standby (native) + local (managed sqlite); analytics = warehouse (sqlite)${reportsUri ? ' + reports (managed mariadb)' : ''}`,
  )
  say(
    `  least-lag routing, lag measured by heartbeats; CDC rule shop-to-analytics streams users and clients from the WAL\n`,
  )

  // ---- steady load with a live view; the standby is promoted half-way
  const load = startLoad(rm, { rate: RATE, clientIds: clients.map((client) => String(client.id)) })
  cleanups.push(() => load.stop())
  const view = new LiveView(rm, load.counters)
  const ticker = setInterval(() => view.render(), process.stdout.isTTY ? 500 : 2000)
  cleanups.push(async () => clearInterval(ticker))
  await sleep(DURATION_MS / 2)
  view.note(
    `▸ promoting the standby (promoteToMaster): the primary is fenced read-only, the standby applies its last heartbeat, then pg_promote()…`,
  )
  const promotion = await rm.promoteToMaster('shop', 'standby').catch((error: unknown) => error as Error)
  if (promotion instanceof Error) view.note(`  promotion refused: ${promotion.message}`)
  else {
    const writesBefore = load.counters.writes
    view.note(
      `  standby is the master (epoch ${promotion.epoch}, lag at promotion ${promotion.lagAtPromotionMs ?? '?'} ms); primary fenced; the managed slave and the rule re-seed from the new master`,
    )
    await sleep(1000)
    view.note(
      `  writes resumed on the new master: ${load.counters.writes - writesBefore} writes in the next second (${load.counters.writeErrors} refused during the switch)`,
    )
  }
  await sleep(DURATION_MS / 2)
  await load.stop()
  clearInterval(ticker)
  view.render()
  view.freeze()

  // ---- let every copy catch up, then compare them
  say('\n▸ load stopped; waiting for every copy to apply the last changes…')
  await rm.stopRule('shop-to-analytics')
  const stats = await rm.sync('shop-to-analytics')
  const shopMaster = rm.resolveWriteService('shop').dialect
  const copies: Array<{ label: string; dialect: Dialect }> = [
    {
      label: `shop/${rm.getReplicaStatus('shop').find((r) => r.role === 'master')!.name} (master)`,
      dialect: shopMaster,
    },
  ]
  const direct: Dialect[] = []
  const open = async (label: string, dialect: string, uri: string) => {
    const connection = await connectDialect({ dialect, uri })
    direct.push(connection)
    copies.push({ label, dialect: connection })
  }
  await open('shop/local (managed sqlite)', 'sqlite', localFile.uri)
  await open('analytics/warehouse (sqlite)', 'sqlite', warehouseFile.uri)
  if (reportsUri) await open('analytics/reports (managed mariadb)', 'mariadb', reportsUri)
  cleanups.push(async () => {
    for (const connection of direct) await connection.close()
  })
  let consistent = false
  const results = new Map<string, string>()
  for (let attempt = 0; attempt < 100 && !consistent; attempt++) {
    if (attempt) await sleep(200)
    results.clear()
    for (const copy of copies) {
      const prints = await Promise.all(
        ['users', 'clients'].map(async (collection) =>
          fingerprint(copy.dialect, collection).catch(() => ({ rows: -1, sha256: 'missing' })),
        ),
      )
      results.set(copy.label, prints.map((print) => `${String(print.rows).padStart(6)} ${print.sha256}`).join('   '))
    }
    consistent = new Set(results.values()).size === 1
  }

  say(
    `\n▸ getSyncStats('shop-to-analytics'): ${stats.recordsSynced} records (${stats.created} created, ${stats.updated} updated, ${stats.deleted} deleted), ${stats.deadLettered} dead letters, ${stats.reseeds} re-seed after the promotion, last lag ${stats.lagMs} ms`,
  )
  for (const detail of stats.details)
    say(
      `    ${detail.collection.padEnd(8)} snapshot ${detail.snapshotRows}, created ${detail.created}, updated ${detail.updated}, deleted ${detail.deleted}`,
    )
  say(`\n  ${'copy'.padEnd(36)} ${'users'.padStart(6)} sha256             ${'clients'.padStart(6)} sha256`)
  for (const [label, line] of results) say(`  ${label.padEnd(36)} ${line}`)
  say(
    consistent
      ? '  ✓ every copy is equal (row counts and checksums over every row and column)'
      : '  ✗ the copies differ',
  )

  try {
    await connectDialect({
      dialect: 'postgres',
      uri: `postgres://demo:not-my-password@127.0.0.1:${master.port}/shop`,
      connectTimeoutMs: 2000,
    })
  } catch (error) {
    if (ReplicatorError.isInstance(error)) say(`\n▸ errors are clear and masked: ${error.code}: ${error.message}`)
  }
  if (options.keep)
    say(
      `\n--keep: the databases stay: master ${rm.getReplicaStatus('shop')[0]!.uri}, standby port ${standby.port}, SQLite files ${localFile.path}, ${warehouseFile.path}`,
    )
  if (!consistent) process.exitCode = 1
} finally {
  await cleanup()
}

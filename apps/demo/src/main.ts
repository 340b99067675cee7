/**
 * A first tour of @mostajs/replicator on embedded databases (nothing to install):
 * an embedded PostgreSQL, SQLite files and, when the system has it, a private MariaDB.
 * It writes through the ORM-style EntityService on PostgreSQL, copies the collection to the
 * other databases and checks every copy is equal, then runs a ReplicationManager with a
 * managed SQLite slave (measured lag, read-your-writes) and a log-based CDC rule.
 *
 *   pnpm demo [--rows 5000] [--keep]
 */
import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import { collectionSchemaOf, connectDialect, EntityService, ReplicationManager, ReplicatorError, scanAll, type Dialect, type EntitySchema, type Row } from '@mostajs/replicator'
import { createMariaDBDatabase, mariadbAvailability, sqliteFile, startMariaDB, startPostgres } from '@mostajs/replicator-testkit'

const { values: options } = parseArgs({ options: { rows: { type: 'string', default: '5000' }, keep: { type: 'boolean', default: false } } })
const ROWS = Number(options.rows)

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

/**
 * Fingerprint of a collection: row count and a hash of the sorted row hashes. Order-independent
 * on purpose: each database scans in its own key order (MariaDB's UUID type sorts differently
 * from PostgreSQL's).
 */
async function fingerprint(dialect: Dialect, collection: string): Promise<{ rows: number; sha256: string }> {
  const rowHashes: string[] = []
  for await (const page of scanAll(dialect, collection, { pageSize: 1000 })) {
    for (const row of page) {
      const text = JSON.stringify(row, (_key, value) => (typeof value === 'bigint' ? value.toString() : value))
      rowHashes.push(createHash('sha256').update(text).digest('hex'))
    }
  }
  return { rows: rowHashes.length, sha256: createHash('sha256').update(rowHashes.sort().join('')).digest('hex').slice(0, 16) }
}

async function copyCollection(source: Dialect, target: Dialect, collection: string): Promise<number> {
  await target.ensureCollection(collectionSchemaOf(await source.describeCollection(collection)))
  let copied = 0
  for await (const page of scanAll(source, collection, { pageSize: 1000 })) copied += await target.upsertMany(collection, page)
  return copied
}

const cleanups: Array<() => Promise<void>> = []
async function cleanup() {
  for (const step of cleanups.reverse()) await step().catch(() => undefined)
  cleanups.length = 0
}
process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)) })

try {
  say('▸ starting an embedded PostgreSQL (logical WAL on)…')
  const postgresServer = await startPostgres()
  if (!options.keep) cleanups.push(() => postgresServer.stop())
  const postgresUri = await postgresServer.createDatabase('demo')
  const postgres = await connectDialect({ dialect: 'postgres', uri: postgresUri })
  cleanups.push(() => postgres.close())
  say(`  connected to ${postgres.maskedUri}   (the password never appears)`)

  await postgres.ensureCollection(Client)
  const clients = new EntityService(postgres, [Client])
  let created = 0
  clients.on('entity.created', () => { created++ })
  const started = performance.now()
  for (let i = 0; i < 20; i++) {
    await clients.create('Client', { email: `client${i}@example.com`, name: `Client ${i} — ünïcødé`, vip: i % 5 === 0, balance: i * 10.5, profile: { tier: i % 3, tags: ['demo'] } })
  }
  const bulk: Row[] = Array.from({ length: ROWS }, (_, i) => ({
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, email: `bulk${i}@example.com`, name: `Bulk ${i}`, vip: i % 7 === 0,
    balance: (i * 37) % 1000 / 4, profile: { batch: Math.floor(i / 1000) }, createdAt: new Date(Date.UTC(2025, 0, 1) + i * 60_000), updatedAt: null,
  }))
  for (let start = 0; start < bulk.length; start += 1000) await postgres.upsertMany('clients', bulk.slice(start, start + 1000))
  say(`▸ wrote ${created} clients through EntityService (events: entity.created ×${created}) and ${ROWS} more with upsertMany in ${Math.round(performance.now() - started)} ms`)

  await postgres.$transaction(async (tx) => {
    await tx.update('clients', { email: 'client0@example.com' }, { $inc: { balance: -50 } })
    await tx.update('clients', { email: 'client1@example.com' }, { $inc: { balance: 50 } })
  })
  say('▸ moved 50 between two clients in one transaction ($transaction, $inc)')

  const targets: Array<{ label: string; dialect: Dialect }> = []
  const file = sqliteFile('demo.db')
  if (!options.keep) cleanups.push(async () => file.cleanup())
  const sqlite = await connectDialect({ dialect: 'sqlite', uri: file.uri })
  cleanups.push(() => sqlite.close())
  targets.push({ label: 'sqlite', dialect: sqlite })
  if (mariadbAvailability().available) {
    say('▸ starting a private MariaDB (binlog in ROW format)…')
    const mariadbServer = await startMariaDB()
    if (!options.keep) cleanups.push(() => mariadbServer.stop())
    const mariadb = await connectDialect({ dialect: 'mariadb', uri: (await createMariaDBDatabase(mariadbServer.url, 'demo')).replace(/^mysql:/, 'mariadb:') })
    cleanups.push(() => mariadb.close())
    targets.push({ label: 'mariadb', dialect: mariadb })
  } else say(`  (MariaDB skipped: ${mariadbAvailability().reason})`)

  for (const target of targets) {
    const copyStarted = performance.now()
    const copied = await copyCollection(postgres, target.dialect, 'clients')
    say(`▸ copied ${copied} rows postgres → ${target.label} (keyset scan + batched upserts) in ${Math.round(performance.now() - copyStarted)} ms`)
  }

  say('\n  copy       rows    sha256 over every row')
  const reference = await fingerprint(postgres, 'clients')
  say(`  postgres   ${String(reference.rows).padEnd(7)} ${reference.sha256}`)
  let consistent = true
  for (const target of targets) {
    const print = await fingerprint(target.dialect, 'clients')
    consistent &&= print.rows === reference.rows && print.sha256 === reference.sha256
    say(`  ${target.label.padEnd(10)} ${String(print.rows).padEnd(7)} ${print.sha256}`)
  }
  say(consistent ? '  ✓ every copy is equal: booleans, timestamps, decimals and JSON survived the trip' : '  ✗ copies differ')

  // ---- the ReplicationManager: a managed SQLite slave fed by change capture, measured lag, a CDC rule
  say('\n▸ ReplicationManager: project "shop" = this PostgreSQL (master) + a managed SQLite slave fed by log-based capture')
  const replicaFile = sqliteFile('replica.db')
  const analyticsFile = sqliteFile('analytics.db')
  if (!options.keep) cleanups.push(async () => { replicaFile.cleanup(); analyticsFile.cleanup() })
  const rm = new ReplicationManager(null, { heartbeatIntervalMs: 100 })
  cleanups.push(() => rm.disconnectAll())
  await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: postgresUri }, [Client])
  await rm.addReplica('shop', { name: 'local', role: 'slave', dialect: 'sqlite', uri: replicaFile.uri, replication: 'managed', lagTolerance: 1000 })
  rm.setReadRouting('shop', 'least-lag')
  const deadline = Date.now() + 20_000
  while (rm.getReplicaStatus('shop').some((replica) => replica.status !== 'healthy') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  const session = rm.session('shop')
  const fresh = await session.write().create('Client', { email: 'session@example.com', vip: true, balance: 1 })
  const seen = await session.read().findById('Client', fresh.id)
  say(`  read-your-writes: a session wrote ${fresh.email} and read it back at once (${seen ? 'found' : 'missing'})`)
  await new Promise((resolve) => setTimeout(resolve, 500))
  const served = rm.resolveReadService('shop').dialect.maskedUri.startsWith('sqlite') ? 'the SQLite slave' : 'the master'
  say(`  a plain read is now served by ${served}; status:`)
  for (const replica of rm.getReplicaStatus('shop')) {
    say(`    ${replica.name.padEnd(8)} ${replica.role.padEnd(6)} ${replica.status.padEnd(9)} lag ${String(replica.lag ?? '-').padStart(4)} ms  ${replica.uri}`)
  }
  await rm.addReplica('analytics', { name: 'main', role: 'master', dialect: 'sqlite', uri: analyticsFile.uri })
  await rm.addReplicationRule({ name: 'clients-to-analytics', source: 'shop', target: 'analytics', mode: 'cdc', collections: ['clients'], conflictResolution: 'source-wins' })
  const first = await rm.sync('clients-to-analytics')
  const writes = rm.resolveWriteService('shop')
  await writes.dialect.update('clients', { vip: true }, { $inc: { balance: 100 } })
  await writes.dialect.delete('clients', { email: { $in: ['bulk1@example.com', 'bulk2@example.com'] } })
  const second = await rm.sync('clients-to-analytics')
  say(`▸ CDC rule clients-to-analytics (PostgreSQL → SQLite): snapshot of ${first.details[0]?.snapshotRows} rows, then ${second.updated} updates and ${second.deleted} deletes streamed from the WAL in ${second.duration} ms`)
  const analyticsCount = await rm.resolveWriteService('analytics').count('clients')
  say(`  analytics now holds ${analyticsCount} clients, the master ${await writes.count('Client')}`)
  await rm.removeReplicationRule('clients-to-analytics')

  try {
    await connectDialect({ dialect: 'postgres', uri: `postgres://demo:not-my-password@127.0.0.1:${postgresServer.port}/demo`, connectTimeoutMs: 2000 })
  } catch (error) {
    if (ReplicatorError.isInstance(error)) say(`\n▸ errors are clear and masked: ${error.code}: ${error.message}`)
  }
  if (options.keep) say(`\n--keep: PostgreSQL stays up at ${postgres.maskedUri}, SQLite file at ${file.path}`)
  if (!consistent) process.exitCode = 1
} finally {
  await cleanup()
}

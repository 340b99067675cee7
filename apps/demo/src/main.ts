/**
 * A first tour of @mostajs/replicator on embedded databases (nothing to install):
 * an embedded PostgreSQL, a SQLite file and, when the system has it, a private MariaDB.
 * It writes through the ORM-style EntityService on PostgreSQL, copies the collection to the
 * other databases by keyset scan + batched upserts, and checks every copy is equal.
 *
 *   pnpm demo [--rows 5000] [--keep]
 */
import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import { connectDialect, EntityService, ReplicatorError, scanAll, type Dialect, type EntitySchema, type Row } from '@mostajs/replicator-core'
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
  const described = await source.describeCollection(collection)
  await target.ensureCollection({
    name: collection,
    primaryKey: described.primaryKey,
    columns: described.columns.map((column) => {
      if (column.type === 'unknown') throw new Error(`column ${column.name} has no portable type`)
      return { name: column.name, type: column.type, length: column.length, precision: column.precision, scale: column.scale }
    }),
  })
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
  const postgres = await connectDialect({ dialect: 'postgres', uri: await postgresServer.createDatabase('demo') })
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

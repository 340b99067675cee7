import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect } from '@mostajs/replicator'
import {
  etcdAvailable,
  startEtcdCluster,
  startPostgres,
  startPostgresStandby,
  type RunningPostgres,
} from '@mostajs/replicator-testkit'
import { privateServer, runScript, testBackends } from '@mostajs/replicator-testkit/vitest'

// Every TypeScript block of the README and of the user guides under docs/ runs here, as a user
// would run it (its own node process, the packages resolved like an install), against real
// databases given through the environment variables the block reads. readme-code.test.ts
// type-checks them as well (and the dialect author's sketch in docs/adding-a-dialect.md, which
// needs a dialect of one's own to run). A block the README repeats from docs/ runs once.
const app = fileURLToPath(new URL('..', import.meta.url))
const root = fileURLToPath(new URL('../../../', import.meta.url))
const documents = [
  'README.md',
  ...readdirSync(`${root}docs`)
    .filter((name) => name.endsWith('.md') && name !== 'adding-a-dialect.md')
    .map((name) => `docs/${name}`),
]
const blocks = [
  ...new Set(
    documents.flatMap((document) =>
      [...readFileSync(`${root}${document}`, 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!),
    ),
  ),
]
const { available, skipNote } = privateServer('postgres')

/** The block whose text contains `marker` (so reordering the documents does not break the test). */
function block(marker: string): string {
  const found = blocks.filter((code) => code.includes(marker))
  if (found.length !== 1)
    throw new Error(`expected one README or docs/ block containing ${JSON.stringify(marker)}, found ${found.length}`)
  return found[0]!
}

describe.skipIf(!available)(`README code blocks run${skipNote}`, () => {
  let master: RunningPostgres
  let standby: RunningPostgres
  const urls: Record<string, string> = {}
  const cleanups: Array<() => Promise<void>> = []
  // inside the demo app, so the blocks resolve the workspace packages as a project would
  const dir = mkdtempSync(join(app, '.readme-run-'))

  /** Writes a block beside a runner that exits once it is done, runs it, and meanwhile does `during`. */
  async function run(
    code: string,
    env: Record<string, string>,
    name: string,
    during?: () => Promise<void>,
  ): Promise<{ code: number | null; output: string }> {
    writeFileSync(join(dir, `${name}.mts`), code)
    writeFileSync(
      join(dir, `${name}.run.mts`),
      `await import('./${name}.mts')\nprocess.exit(0) // the block leaves pools open, as a snippet may\n`,
    )
    const running = runScript(`${name}.run.mts`, [], { cwd: dir, env: { ...process.env, ...env } })
    await during?.()
    const { code: exit, stdout, stderr } = await running
    return { code: exit, output: stdout + stderr }
  }

  beforeAll(async () => {
    master = await startPostgres()
    urls.quick = await master.createDatabase('quick')
    urls.shop = await master.createDatabase('shop')
    urls.billing = await master.createDatabase('billing')
    urls.ledger = await master.createDatabase('ledger')
    const ledger = await connectDialect({ dialect: 'postgres', uri: urls.ledger })
    await ledger.query('CREATE TABLE payments (id serial PRIMARY KEY, payer text NOT NULL, cents integer NOT NULL)')
    await ledger.close()
    const billing = await connectDialect({ dialect: 'postgres', uri: urls.billing })
    await billing.query(
      'CREATE TABLE invoices (id serial PRIMARY KEY, customer text NOT NULL, amount integer NOT NULL)',
    )
    await billing.close()
    // on another server: the routing block fences (read-only) the whole master cluster
    const cdcDatabase = await testBackends().postgres.freshDatabase()
    cleanups.push(cdcDatabase.cleanup)
    urls.cdc = cdcDatabase.uri
    const shop = await connectDialect({ dialect: 'postgres', uri: urls.shop })
    await shop.ensureCollection({
      name: 'products',
      columns: [
        { name: 'id', type: 'string' },
        { name: 'active', type: 'boolean' },
      ],
      primaryKey: ['id'],
    })
    await shop.ensureCollection({
      name: 'orders',
      columns: [
        { name: 'id', type: 'string' },
        { name: 'total', type: 'decimal' },
      ],
      primaryKey: ['id'],
    })
    await shop.ensureCollection({
      name: 'carts',
      columns: [
        { name: 'id', type: 'string' },
        { name: 'items', type: 'integer' },
      ],
      primaryKey: ['id'],
    })
    await shop.upsertMany('products', [{ id: 'p-1', active: true }])
    await shop.upsertMany('carts', [{ id: 'c-1', items: 1 }])
    await shop.close()
    const cdc = await connectDialect({ dialect: 'postgres', uri: urls.cdc })
    await cdc.ensureCollection({
      name: 'users',
      columns: [
        { name: 'id', type: 'string' },
        { name: 'email', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await cdc.ensureCollection({
      name: 'orders',
      columns: [
        { name: 'id', type: 'string' },
        { name: 'total', type: 'decimal' },
      ],
      primaryKey: ['id'],
    })
    await cdc.upsertMany('users', [{ id: 'u-1', email: 'ada@example.com' }])
    await cdc.close()
    standby = await startPostgresStandby(master)
    urls.replica = Object.assign(new URL(urls.shop), { port: String(standby.port) }).toString()
  })

  afterAll(async () => {
    await standby?.stop()
    await master?.stop()
    for (const cleanup of cleanups) await cleanup()
    rmSync(dir, { recursive: true, force: true })
  })

  it('has the blocks this test runs, and no other', () => {
    expect(blocks.length).toBe(8)
  })

  it('Quick start', async () => {
    const result = await run(block('scanAll(db'), { DATABASE_URL: urls.quick! }, 'quick-start')
    expect(result.output).toContain('User') // the entity.created listener printed
    expect(result.code).toBe(0)
    const db = await connectDialect({ dialect: 'postgres', uri: urls.quick! })
    try {
      expect(await db.find('accounts', {}, { sort: { id: 1 }, select: ['id', 'balance'] })).toEqual([
        { id: 'a', balance: 50 },
        { id: 'b', balance: 50 },
      ])
    } finally {
      await db.close()
    }
  })

  // before the routing block, which promotes the standby
  it('Kysely', async () => {
    const replica = Object.assign(new URL(urls.billing!), { port: String(standby.port) }).toString()
    const result = await run(block('ReplicatedDialect'), { PRIMARY_URL: urls.billing!, REPLICA_URL: replica }, 'kysely')
    expect(result.output).toContain('read my write: 99 | large invoices seen before:')
    expect(result.code).toBe(0)
    const billing = await connectDialect({ dialect: 'postgres', uri: urls.billing! })
    try {
      expect(await billing.find('invoices', {}, { sort: { customer: 1 }, select: ['customer', 'amount'] })).toEqual([
        { customer: 'ada', amount: 130 },
        { customer: 'grace', amount: 99 },
      ])
    } finally {
      await billing.close()
    }
  })

  it('Drizzle', async () => {
    const replica = Object.assign(new URL(urls.ledger!), { port: String(standby.port) }).toString()
    const result = await run(block('replicatedDrizzle'), { PRIMARY_URL: urls.ledger!, REPLICA_URL: replica }, 'drizzle')
    expect(result.output).toContain('drizzle read my write: 990')
    expect(result.code).toBe(0)
    const ledger = await connectDialect({ dialect: 'postgres', uri: urls.ledger! })
    try {
      expect(await ledger.find('payments', {}, { sort: { payer: 1 }, select: ['payer', 'cents'] })).toEqual([
        { payer: 'ada', cents: 1250 },
        { payer: 'grace', cents: 990 },
      ])
    } finally {
      await ledger.close()
    }
  })

  it('Master/slave routing and promotion', async () => {
    const result = await run(
      block("promoteToMaster('shop', 'r1')"),
      { PRIMARY_URL: urls.shop!, REPLICA_URL: urls.replica! },
      'routing',
    )
    expect(result.output).not.toMatch(/Error|password/)
    expect(result.code).toBe(0)
    expect(readFileSync(join(dir, '.mostajs', 'replicator-tree.json'), 'utf8')).toContain('${REPLICA_URL}')
    const promoted = await connectDialect({ dialect: 'postgres', uri: urls.replica! })
    try {
      expect(await promoted.findOne('orders', { id: 'o-1' })).toEqual({ id: 'o-1', total: '19.9' }) // portable decimals are canonical text
      expect(await promoted.findOne('carts', { id: 'c-1' })).toEqual({ id: 'c-1', items: 3 })
      await promoted.upsertMany('carts', [{ id: 'c-2', items: 0 }]) // it is a writable master now
    } finally {
      await promoted.close()
    }
  })

  it('Change data capture', async () => {
    const result = await run(block('addReplicationRule'), { PRIMARY_URL: urls.cdc! }, 'cdc')
    expect(result.output).toContain('recordsSynced')
    expect(result.code).toBe(0)
    const analytics = await connectDialect({ dialect: 'sqlite', uri: `sqlite:${join(dir, 'analytics.db')}` })
    try {
      expect(await analytics.find('users')).toEqual([{ id: 'u-1', email: 'ada@example.com' }])
    } finally {
      await analytics.close()
    }
    const source = await connectDialect({ dialect: 'postgres', uri: urls.cdc! })
    try {
      const slots = await source.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots')
      expect(slots.filter((slot) => slot.slot_name.includes('users_to_analytics'))).toEqual([]) // removed with the rule
    } finally {
      await source.close()
    }
  })

  it.skipIf(!etcdAvailable() && process.env.REPLICATOR_REQUIRE_BACKENDS !== '1')(
    'Several processes, one topology (etcd)',
    async () => {
      const cluster = await startEtcdCluster(3)
      cleanups.push(() => cluster.stop())
      const database = await testBackends().postgres.freshDatabase()
      cleanups.push(database.cleanup)
      const env = { ETCD_ENDPOINTS: cluster.endpoints.join(','), PRIMARY_URL: database.uri, HOSTNAME: 'readme' }
      const result = await run(block('EtcdTopologyStore'), env, 'etcd')
      expect(result.output).toContain('epoch 0')
      expect(result.code).toBe(0)
    },
  )

  it('openChangeStream', async () => {
    const database = await testBackends().postgres.freshDatabase()
    cleanups.push(database.cleanup)
    const db = await connectDialect({ dialect: 'postgres', uri: database.uri })
    try {
      await db.ensureCollection({
        name: 'users',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'email', type: 'string' },
        ],
        primaryKey: ['id'],
      })
      const result = await run(
        block('openChangeStream(db'),
        { DATABASE_URL: database.uri },
        'change-stream',
        async () => {
          // once the block's capture exists, make the changes it waits for
          const deadline = Date.now() + 30_000
          while (
            !(await db.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'replicator_audit_%'`)).length
          ) {
            if (Date.now() > deadline) throw new Error('the block never created its capture')
            await new Promise((resolve) => setTimeout(resolve, 50))
          }
          await db.insert('users', { id: 1, email: 'ada@example.com' })
          await db.delete('users', { id: 1 })
        },
      )
      expect(result.output).toMatch(/^c users 1 \{ id: 1, email: 'ada@example.com' \}$/m)
      expect(result.output).toMatch(/^d users 1 null$/m)
      expect(result.code).toBe(0)
    } finally {
      await db.capture!.drop('audit').catch(() => undefined)
      await db.close()
    }
  })

  it('Status endpoint', async () => {
    const result = await run(block('startStatusServer'), {}, 'status')
    expect(result.output).toMatch(/^http:\/\/127\.0\.0\.1:9470\/metrics$/m)
    expect(result.code).toBe(0)
  })
})

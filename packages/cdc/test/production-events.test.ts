import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, type CollectionSchema, type Dialect, type Row } from '@mostajs/replicator-core'
import { DEAD_LETTERS_COLLECTION, RuleRunner } from '@mostajs/replicator-cdc'
import { ReplicationManager } from '@mostajs/replicator'
import { privateServer, testBackends, waitFor } from '@mostajs/replicator-testkit/vitest'
import { createMariaDBDatabase, startMariaDB } from '@mostajs/replicator-testkit'
import { freshDatabases } from './fixtures/fresh-databases.js'

// The ordinary events of a production database, each on real servers: rules must neither stall
// for good nor lose data while reporting success.

const backends = testBackends()
const cleanups: Array<() => Promise<void>> = [] // managers, stopped before the databases go
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})
const { open } = freshDatabases()

const items = (name: string, labelLength = 50): CollectionSchema => ({
  name,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'label', type: 'string', length: labelLength },
  ],
  primaryKey: ['id'],
})
const byId = (rows: Row[]) => [...rows].sort((a, b) => Number(a.id) - Number(b.id))

describe.skipIf(!backends.postgres.serverUrl)('rejected rows', () => {
  it('600 rows the target rejects and 10 good ones in one source transaction: every good row applied, every bad row dead-lettered', async () => {
    const { dialect: source } = await open(backends.sqlite)
    const { dialect: target } = await open(backends.postgres)
    await source.ensureCollection(items('items'))
    await target.ensureCollection(items('items', 5)) // the target's column is shorter: long labels are refused
    const runner = new RuleRunner(
      { name: 'bad-rows', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
      source,
      target,
    )
    await runner.sync()
    const rows = Array.from({ length: 610 }, (_, index) => ({
      id: index + 1,
      label: index < 10 ? `ok${index}` : `far too long ${index}`,
    }))
    await source.transaction(async (tx) => {
      await tx.upsertMany('items', rows)
    })
    const stats = await runner.sync()
    expect(byId(await target.find('items')).map((row) => row.id)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1))
    expect(await target.count(DEAD_LETTERS_COLLECTION, { rule: 'bad-rows' })).toBe(600)
    expect(stats).toMatchObject({ created: 10, deadLettered: 600 })
    await runner.teardown()
  })

  it('rows the target rejects during the snapshot are dead-lettered; the good rows are copied and the rule goes on', async () => {
    const { dialect: source } = await open(backends.sqlite)
    const { dialect: target } = await open(backends.postgres)
    await source.ensureCollection(items('items'))
    await target.ensureCollection(items('items', 5))
    await source.upsertMany(
      'items',
      Array.from({ length: 610 }, (_, index) => ({
        id: index + 1,
        label: index < 10 ? `ok${index}` : `far too long ${index}`,
      })),
    )
    const runner = new RuleRunner(
      { name: 'bad-snapshot', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
      source,
      target,
    )
    const stats = await runner.sync()
    expect(await target.count('items')).toBe(10)
    expect(await target.count(DEAD_LETTERS_COLLECTION, { rule: 'bad-snapshot' })).toBe(600)
    expect(stats.deadLettered).toBe(600)
    await source.upsertMany('items', [{ id: 1000, label: 'later' }])
    await runner.sync()
    expect(await target.findOne('items', { id: 1000 })).toEqual({ id: 1000, label: 'later' })
    await runner.teardown()
  })

  it('dead letters of long keys that differ only at the end are kept apart', async () => {
    const { dialect: source } = await open(backends.sqlite)
    const { dialect: target } = await open(backends.postgres)
    const keyed = (length: number): CollectionSchema => ({
      name: 'docs',
      columns: [
        { name: 'id', type: 'string', length: 300 },
        { name: 'label', type: 'string', length },
      ],
      primaryKey: ['id'],
    })
    await source.ensureCollection(keyed(50))
    await target.ensureCollection(keyed(5))
    const runner = new RuleRunner(
      {
        name: 'a-rule-with-a-rather-long-name-of-forty-chars',
        source: 'a',
        target: 'b',
        mode: 'cdc',
        collections: ['docs'],
      },
      source,
      target,
    )
    await runner.sync()
    const prefix = 'k'.repeat(250)
    await source.upsertMany('docs', [
      { id: `${prefix}-1`, label: 'too long to fit' },
      { id: `${prefix}-2`, label: 'too long as well' },
    ])
    await runner.sync()
    expect(await target.count(DEAD_LETTERS_COLLECTION, {})).toBe(2)
    await runner.teardown()
  })
})

describe('SQLite captures with names that share a prefix', () => {
  it('removing rule "orders" leaves the capture of rule "orders_eu" working', async () => {
    const { dialect: source, uri: sourceUri } = await open(backends.sqlite)
    const { uri: targetUri } = await open(backends.sqlite)
    await source.ensureCollection(items('items'))
    await source.ensureCollection(items('eu_items'))
    const rm = new ReplicationManager()
    cleanups.push(() => rm.disconnectAll())
    await rm.addReplica('shop', { name: 'main', role: 'master', dialect: 'sqlite', uri: sourceUri })
    await rm.addReplica('copy', { name: 'main', role: 'master', dialect: 'sqlite', uri: targetUri })
    await rm.addReplicationRule({
      name: 'orders',
      source: 'shop',
      target: 'copy',
      mode: 'cdc',
      collections: ['eu_items'],
    })
    await rm.addReplicationRule({
      name: 'orders_eu',
      source: 'shop',
      target: 'copy',
      mode: 'cdc',
      collections: ['items'],
    })
    await rm.sync('orders')
    await rm.sync('orders_eu')
    await rm.removeReplicationRule('orders')
    await source.upsertMany('items', [{ id: 1, label: 'after the removal' }])
    await rm.sync('orders_eu')
    expect(await rm.resolveWriteService('copy').findAll('items')).toEqual([{ id: 1, label: 'after the removal' }])
  })
})

describe('rules removed and added again', () => {
  it('a rule re-added under the same name with one more collection copies everything again', async () => {
    const { dialect: source, uri: sourceUri } = await open(backends.sqlite)
    const { dialect: target, uri: targetUri } = await open(backends.sqlite)
    await source.ensureCollection(items('items'))
    await source.ensureCollection(items('notes'))
    await source.upsertMany(
      'items',
      [1, 2, 3].map((id) => ({ id, label: `i${id}` })),
    )
    await source.upsertMany(
      'notes',
      [1, 2, 3, 4].map((id) => ({ id, label: `n${id}` })),
    )
    const rm = new ReplicationManager()
    cleanups.push(() => rm.disconnectAll())
    await rm.addReplica('shop', { name: 'main', role: 'master', dialect: 'sqlite', uri: sourceUri })
    await rm.addReplica('copy', { name: 'main', role: 'master', dialect: 'sqlite', uri: targetUri })
    const rule = { name: 'again', source: 'shop', target: 'copy', mode: 'cdc' as const }
    await rm.addReplicationRule({ ...rule, collections: ['items'] })
    await rm.sync('again')
    await rm.removeReplicationRule('again')
    await source.upsertMany(
      'items',
      [4, 5, 6, 7, 8].map((id) => ({ id, label: `i${id}` })),
    ) // while no rule ran
    await rm.addReplicationRule({ ...rule, collections: ['items', 'notes'] })
    await rm.sync('again')
    expect(await target.count('items')).toBe(8)
    expect(await target.count('notes')).toBe(4)
  })
})

describe('collections added to a rule', () => {
  it('a collection added to an existing rule (same name, same target) is copied, then streamed', async () => {
    const { dialect: source } = await open(backends.sqlite)
    const { dialect: target } = await open(backends.sqlite)
    await source.ensureCollection(items('items'))
    await source.ensureCollection(items('notes'))
    await source.upsertMany(
      'notes',
      [1, 2].map((id) => ({ id, label: `n${id}` })),
    )
    const rule = { name: 'growing', source: 'a', target: 'b', mode: 'cdc' as const }
    const owner = { owner: 'this process' } // a tree edit makes a new runner in the same process
    await new RuleRunner({ ...rule, collections: ['items'] }, source, target, {}, owner).sync()
    const grown = new RuleRunner({ ...rule, collections: ['items', 'notes'] }, source, target, {}, owner)
    await grown.sync()
    await source.upsertMany('notes', [{ id: 3, label: 'n3' }])
    await grown.sync()
    expect(byId(await target.find('notes')).map((row) => row.id)).toEqual([1, 2, 3])
    await grown.teardown()
  })
})

describe.skipIf(!backends.postgres.serverUrl)('SQLite source transactions', () => {
  it('each lands whole in one target transaction, even when larger than a batch or a read', async () => {
    const { dialect: source } = await open(backends.sqlite)
    const { dialect: target } = await open(backends.postgres)
    await source.ensureCollection(items('items'))
    // the target's own column records which of its transactions wrote each row
    await target.query(
      'CREATE TABLE items (id integer PRIMARY KEY, label varchar(50), tx bigint DEFAULT txid_current())',
    )
    const runner = new RuleRunner(
      { name: 'whole', source: 'a', target: 'b', mode: 'cdc', collections: ['items'], batchSize: 100 },
      source,
      target,
    )
    await runner.sync()
    const write = (from: number, count: number) =>
      source.transaction(async (tx) => {
        await tx.upsertMany(
          'items',
          Array.from({ length: count }, (_, index) => ({ id: from + index, label: `i${from + index}` })),
        )
      })
    await write(1, 250) // more than a batch
    await write(1000, 1)
    await write(2000, 25_000) // more than one read of the changelog
    await runner.sync()
    const transactions = await target.query<{ first: number; writers: string }>(
      `SELECT min(id) AS first, count(DISTINCT tx)::text AS writers FROM items
       GROUP BY CASE WHEN id < 1000 THEN 1 WHEN id < 2000 THEN 2 ELSE 3 END ORDER BY 1`,
    )
    expect(transactions).toEqual([
      { first: 1, writers: '1' },
      { first: 1000, writers: '1' },
      { first: 2000, writers: '1' },
    ])
    expect(await target.count('items')).toBe(25_251)
    await runner.teardown()
  })
})

describe('TRUNCATE', () => {
  const cases = [
    ['postgres', 'TRUNCATE items'],
    ['mariadb', 'TRUNCATE TABLE items'],
  ] as const
  for (const [kind, truncate] of cases) {
    for (const appliedJustBefore of [false, true]) {
      it.skipIf(!backends[kind].serverUrl)(
        `a TRUNCATE on a ${kind} source empties the target, and later changes still flow${appliedJustBefore ? ' (the transaction before it applied already)' : ''}`,
        async () => {
          const { dialect: source } = await open(backends[kind])
          const { dialect: target } = await open(backends.sqlite)
          await source.ensureCollection(items('items'))
          await source.upsertMany(
            'items',
            [1, 2, 3].map((id) => ({ id, label: `i${id}` })),
          )
          const runner = new RuleRunner(
            { name: 'truncated', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
            source,
            target,
          )
          await runner.sync()
          expect(await target.count('items')).toBe(3)
          await source.upsertMany('items', [{ id: 4, label: 'i4' }])
          if (appliedJustBefore) await runner.sync()
          await source.query(truncate)
          await source.upsertMany('items', [{ id: 9, label: 'after' }])
          await runner.sync()
          expect(await target.find('items')).toEqual([{ id: 9, label: 'after' }])
          await runner.teardown()
        },
      )
    }
  }
})

describe.skipIf(!backends.postgres.serverUrl)('idle rules', () => {
  it('a rule on a quiet table retains no more WAL than a busy one once synced', async () => {
    const { dialect: source, uri: sourceUri } = await open(backends.postgres)
    const { dialect: target } = await open(backends.sqlite)
    await source.ensureCollection(items('quiet'))
    await source.ensureCollection(items('busy', 200))
    const streaming = await connectDialect({ dialect: 'postgres', uri: sourceUri }) // the streaming process's
    const runner = new RuleRunner(
      { name: 'quiet', source: 'a', target: 'b', mode: 'cdc', collections: ['quiet'] },
      streaming,
      target,
    )
    await runner.sync()
    await source.upsertMany('quiet', [{ id: 0, label: 'before' }])
    await runner.sync() // the target stores this offset; later idle positions go only to the slot
    const filler = 'x'.repeat(190)
    for (let round = 0; round < 20; round++) {
      await source.upsertMany(
        'busy',
        Array.from({ length: 2000 }, (_, index) => ({ id: round * 2000 + index, label: filler })),
      )
    }
    // ~15 MB of WAL was written to the other table; once synced, the quiet rule must not hold it
    // (the slot's restart point moves at the server's next snapshot record: a CHECKPOINT writes one)
    let retained = Number.POSITIVE_INFINITY
    for (let attempt = 0; attempt < 40 && retained >= 2_000_000; attempt++) {
      await runner.sync()
      await source.query('CHECKPOINT')
      await new Promise((resolve) => setTimeout(resolve, 100))
      retained = (await source.capture!.backlog('quiet'))!.retainedBytes!
    }
    expect(retained).toBeLessThan(2_000_000)
    // a process restarting from the offset its target stored (older than the slot now) resumes
    await streaming.close()
    await runner.release() // it stopped: the restarted process need not wait for its lease to expire
    const restarted = new RuleRunner(runner.config, source, target)
    await source.upsertMany('quiet', [{ id: 1, label: 'after restart' }])
    await restarted.sync()
    expect(byId(await target.find('quiet'))).toEqual([
      { id: 0, label: 'before' },
      { id: 1, label: 'after restart' },
    ])
    await restarted.teardown()
  })
})

describe.skipIf(!backends.postgres.serverUrl)("collections: ['*'] with a table that cannot be carried", () => {
  it('a table without a primary key is set aside with its reason; the other tables flow', async () => {
    const { dialect: source } = await open(backends.postgres)
    const { dialect: target } = await open(backends.sqlite)
    await source.ensureCollection(items('items'))
    await source.query('CREATE TABLE events_log (at timestamptz, message text)')
    const runner = new RuleRunner(
      { name: 'everything', source: 'a', target: 'b', mode: 'cdc', collections: ['*'] },
      source,
      target,
    )
    await source.upsertMany('items', [{ id: 1, label: 'one' }])
    const stats = await runner.sync()
    await source.upsertMany('items', [{ id: 2, label: 'two' }])
    await runner.sync()
    expect(byId(await target.find('items'))).toEqual([
      { id: 1, label: 'one' },
      { id: 2, label: 'two' },
    ])
    expect(stats.setAside).toEqual([expect.objectContaining({ collection: 'events_log' })])
    expect(stats.setAside?.[0]?.reason).toContain('primary key')
    await runner.teardown()
  })
})

describe('a managed replica and a table it cannot carry', () => {
  it('a table without a primary key created on the master does not stop the feed of the other tables', async () => {
    const { dialect: master, uri: masterUri } = await open(backends.sqlite)
    const { dialect: slave, uri: slaveUri } = await open(backends.sqlite)
    await master.ensureCollection(items('items'))
    const rm = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    cleanups.push(() => rm.disconnectAll())
    await rm.addReplica('shop', { name: 'main', role: 'master', dialect: 'sqlite', uri: masterUri })
    await rm.addReplica('shop', {
      name: 'local',
      role: 'slave',
      dialect: 'sqlite',
      uri: slaveUri,
      replication: 'managed',
    })
    await master.upsertMany('items', [{ id: 1, label: 'before' }])
    await waitFor(async () => (await slave.count('items').catch(() => 0)) === 1, 10_000, 'the first row on the slave')
    await master.query('CREATE TABLE audit_log (message TEXT)')
    await master.upsertMany('items', [{ id: 2, label: 'after' }])
    await waitFor(async () => (await slave.count('items')) === 2, 10_000, 'the row written after the keyless table')
    expect(rm.getStreamState('managed.shop.local')?.consecutiveFailures).toBe(0)
  })
})

describe('lost connections', () => {
  const cases = [
    {
      kind: 'mariadb' as const,
      what: 'a killed binlog dump connection is reopened from the last applied position',
      available: privateServer('mariadb').available,
      // a server of its own: KILL would also end the binlog readers of the tests running beside it
      async source(): Promise<Dialect> {
        const server = await startMariaDB()
        cleanups.push(() => server.stop())
        const uri = (await createMariaDBDatabase(server.url, 'lost')).replace(/^mysql:/, 'mariadb:')
        const dialect = await connectDialect({ dialect: 'mariadb', uri })
        cleanups.push(() => dialect.close())
        return dialect
      },
      async kill(source: Dialect) {
        const dumps = await source.query<{ ID: number }>(
          "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'",
        )
        for (const { ID } of dumps) await source.query(`KILL ${Number(ID)}`)
        return dumps.length
      },
    },
    {
      kind: 'postgres' as const,
      what: 'a terminated replication connection is reopened from the slot',
      available: Boolean(backends.postgres.serverUrl),
      source: async () => (await open(backends.postgres)).dialect,
      async kill(source: Dialect) {
        const killed = await source.query<{ done: boolean }>(
          "SELECT pg_terminate_backend(active_pid) AS done FROM pg_replication_slots WHERE slot_name LIKE 'replicator_lost%' AND active_pid IS NOT NULL",
        )
        return killed.length
      },
    },
  ]
  for (const { kind, what, available, source: openSource, kill } of cases) {
    it.skipIf(!available)(`${kind}: ${what}: nothing lost or doubled`, async () => {
      const source = await openSource()
      const { dialect: target } = await open(backends.sqlite)
      await source.ensureCollection(items('items'))
      const runner = new RuleRunner(
        { name: 'lost', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
        source,
        target,
      )
      await runner.sync()
      await source.upsertMany(
        'items',
        [1, 2].map((id) => ({ id, label: `i${id}` })),
      )
      await runner.sync()
      expect(await kill(source)).toBeGreaterThan(0)
      await source.upsertMany(
        'items',
        [3, 4].map((id) => ({ id, label: `i${id}` })),
      )
      let stats = await runner.sync().catch(() => null) // the first attempt may meet the dead connection
      stats ??= await runner.sync()
      await source.upsertMany('items', [{ id: 5, label: 'i5' }])
      stats = await runner.sync()
      expect(byId(await target.find('items')).map((row) => row.id)).toEqual([1, 2, 3, 4, 5])
      expect(stats.created).toBe(5) // each row once
      await runner.teardown()
    })
  }
})

describe('schema changes on the source', () => {
  const cases = [
    ['postgres', 'sqlite', 'ALTER TABLE items ADD COLUMN extra text'],
    ['postgres', 'postgres', 'ALTER TABLE items ADD COLUMN extra text'],
    ['mariadb', 'sqlite', 'ALTER TABLE items ADD COLUMN extra TEXT'],
  ] as const
  for (const [from, to, alter] of cases) {
    it.skipIf(!backends[from].serverUrl || !backends[to].serverUrl)(
      `${from} → ${to}: a column added on the source is added on the target and carried`,
      async () => {
        const { dialect: source } = await open(backends[from])
        const { dialect: target } = await open(backends[to])
        await source.ensureCollection(items('items'))
        const runner = new RuleRunner(
          { name: `evolving_${from}_${to}`, source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
          source,
          target,
        )
        await source.upsertMany('items', [{ id: 1, label: 'before' }])
        await runner.sync()
        await source.query(alter)
        await source.query("INSERT INTO items (id, label, extra) VALUES (2, 'after', 'more')")
        await source.query("UPDATE items SET extra = 'set later' WHERE id = 1")
        await runner.sync()
        expect(byId(await target.find('items'))).toEqual([
          { id: 1, label: 'before', extra: 'set later' },
          { id: 2, label: 'after', extra: 'more' },
        ])
        await runner.teardown()
      },
    )
  }

  for (const to of ['postgres', 'sqlite'] as const) {
    it.skipIf(!backends.postgres.serverUrl)(
      `postgres → ${to}: a column added after the rule was prepared and before its snapshot is copied with its values`,
      async () => {
        const { dialect: source } = await open(backends.postgres)
        const { dialect: target } = await open(backends[to])
        await source.ensureCollection(items('items'))
        await source.upsertMany('items', [{ id: 1, label: 'one' }])
        const runner = new RuleRunner(
          { name: `late_column_${to}`, source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
          source,
          target,
        )
        await runner.prepare() // the target table is made with the columns of now
        await source.query("ALTER TABLE items ADD COLUMN extra text DEFAULT 'filled'")
        await runner.sync()
        expect(await target.find('items')).toEqual([{ id: 1, label: 'one', extra: 'filled' }])
        await runner.teardown()
      },
    )
  }

  for (const to of ['postgres', 'mariadb'] as const) {
    it.skipIf(!backends.postgres.serverUrl || !backends[to].serverUrl)(
      `postgres → ${to}: a type change the target cannot take dead-letters that table's rows with the reason; the other tables flow`,
      async () => {
        const { dialect: source } = await open(backends.postgres)
        const { dialect: target } = await open(backends[to])
        const counts: CollectionSchema = {
          name: 'counts',
          columns: [
            { name: 'id', type: 'integer' },
            { name: 'qty', type: 'integer' },
          ],
          primaryKey: ['id'],
        }
        await source.ensureCollection(counts)
        await source.ensureCollection(items('items'))
        const rule = `retyped_${to}`
        const runner = new RuleRunner(
          { name: rule, source: 'a', target: 'b', mode: 'cdc', collections: ['counts', 'items'] },
          source,
          target,
        )
        await source.upsertMany('counts', [{ id: 1, qty: 1 }])
        await runner.sync()
        await source.query('ALTER TABLE counts ALTER COLUMN qty TYPE text')
        await source.query("INSERT INTO counts (id, qty) VALUES (2, 'a dozen'), (3, '3')")
        await source.upsertMany('items', [{ id: 1, label: 'still flows' }])
        const stats = await runner.sync()
        expect(await target.find('items')).toEqual([{ id: 1, label: 'still flows' }])
        expect(byId(await target.find('counts'))).toEqual([
          { id: 1, qty: 1 },
          { id: 3, qty: 3 },
        ])
        const [letter] = await target.find(DEAD_LETTERS_COLLECTION, { rule })
        expect(letter).toMatchObject({ collection: 'counts' })
        expect(String(letter!.error)).toMatch(/qty|integer|incorrect|invalid/i)
        expect(stats.deadLettered).toBe(1)
        // later changes of the table still flow
        await source.query("UPDATE counts SET qty = '7' WHERE id = 1")
        await runner.sync()
        expect(await target.findOne('counts', { id: 1 })).toEqual({ id: 1, qty: 7 })
        await runner.teardown()
      },
    )
  }

  it('sqlite → sqlite: the capture triggers are rebuilt with the new column at the next sync', async () => {
    const { dialect: source } = await open(backends.sqlite)
    const { dialect: target } = await open(backends.sqlite)
    await source.ensureCollection(items('items'))
    const runner = new RuleRunner(
      { name: 'evolving_sqlite', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
      source,
      target,
    )
    await source.upsertMany('items', [{ id: 1, label: 'before' }])
    await runner.sync()
    await source.query('ALTER TABLE items ADD COLUMN extra TEXT')
    await runner.sync() // SQLite captures by triggers: they learn the column here
    await source.query("INSERT INTO items (id, label, extra) VALUES (2, 'after', 'more')")
    await source.query("UPDATE items SET extra = 'set later' WHERE id = 1")
    await runner.sync()
    expect(byId(await target.find('items'))).toEqual([
      { id: 1, label: 'before', extra: 'set later' },
      { id: 2, label: 'after', extra: 'more' },
    ])
    await runner.teardown()
  })
})

describe.skipIf(!backends.postgres.serverUrl)('primary-key changes of rows with large values', () => {
  for (const to of ['postgres', 'sqlite'] as const) {
    it(`postgres → ${to}: a key change keeps the unchanged TOASTed value (read from the target's old row)`, async () => {
      const { dialect: source } = await open(backends.postgres)
      const { dialect: target } = await open(backends[to])
      await source.ensureCollection({
        name: 'docs',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'label', type: 'string' },
          { name: 'body', type: 'text' },
        ],
        primaryKey: ['id'],
      })
      const runner = new RuleRunner(
        { name: `moved_${to}`, source: 'a', target: 'b', mode: 'cdc', collections: ['docs'] },
        source,
        target,
      )
      await runner.sync()
      const body = randomBytes(20_000).toString('hex') // incompressible: stored out of line (TOAST)
      await source.upsertMany('docs', [{ id: 1, label: 'one', body }])
      await runner.sync()
      await source.query("UPDATE docs SET id = 2, label = 'moved' WHERE id = 1") // body unchanged: not sent
      await runner.sync()
      const rows = await target.find('docs')
      expect(rows.map((row) => ({ id: row.id, label: row.label, same: row.body === body }))).toEqual([
        { id: 2, label: 'moved', same: true },
      ])
      await runner.teardown()
    })
  }
})

describe.skipIf(!backends.postgres.serverUrl)('REPLICA IDENTITY of PostgreSQL source tables', () => {
  const coded: CollectionSchema = {
    name: 'coded',
    columns: [
      { name: 'id', type: 'integer' },
      { name: 'code', type: 'string', length: 20 },
      { name: 'label', type: 'string' },
    ],
    primaryKey: ['id'],
  }
  const prepared = async (alter: string) => {
    const { dialect: source } = await open(backends.postgres)
    const { dialect: target } = await open(backends.sqlite)
    await source.ensureCollection(coded)
    await source.ensureCollection(items('items'))
    await source.query('ALTER TABLE coded ALTER COLUMN code SET NOT NULL')
    for (const statement of alter.split('; ')) await source.query(statement)
    return { source, target }
  }
  const named = (identity: string) => identity.replace(/\W+/g, '_')

  const carried = [
    ['FULL', 'ALTER TABLE coded REPLICA IDENTITY FULL'],
    [
      'USING INDEX (holding the key)',
      'CREATE UNIQUE INDEX coded_code_id ON coded (code, id); ALTER TABLE coded REPLICA IDENTITY USING INDEX coded_code_id',
    ],
  ] as const
  for (const [identity, alter] of carried)
    it(`${identity}: updates, deletes and key changes reach the target`, async () => {
      const { source, target } = await prepared(alter)
      await source.upsertMany(
        'coded',
        [1, 2, 3, 4].map((id) => ({ id, code: `c${id}`, label: `l${id}` })),
      )
      const runner = new RuleRunner(
        { name: `identity_${named(identity)}`, source: 'a', target: 'b', mode: 'cdc', collections: ['coded'] },
        source,
        target,
      )
      await runner.sync()
      await source.query("UPDATE coded SET label = 'changed' WHERE id = 1")
      await source.query('DELETE FROM coded WHERE id = 2')
      await source.query('UPDATE coded SET id = 30 WHERE id = 3')
      await source.query("UPDATE coded SET code = 'c44' WHERE id = 4")
      await runner.sync()
      expect(byId(await target.find('coded'))).toEqual(byId(await source.find('coded')))
      expect(byId(await target.find('coded')).map((row) => row.id)).toEqual([1, 4, 30])
      await runner.teardown()
    })

  const refused = [
    ['NOTHING', 'ALTER TABLE coded REPLICA IDENTITY NOTHING', /REPLICA IDENTITY NOTHING/],
    [
      'USING INDEX without the key',
      'CREATE UNIQUE INDEX coded_code ON coded (code); ALTER TABLE coded REPLICA IDENTITY USING INDEX coded_code',
      /REPLICA IDENTITY USING INDEX on \(code\), without its key column\(s\) id/,
    ],
  ] as const
  for (const [identity, alter, reason] of refused)
    it(`${identity}: a rule naming the table is refused with the reason; under ['*'] the table is set aside`, async () => {
      const { source, target } = await prepared(alter)
      const rule = { name: `refused_${named(identity)}`, source: 'a', target: 'b', mode: 'cdc' as const }
      const naming = new RuleRunner({ ...rule, collections: ['coded'] }, source, target)
      await expect(naming.prepare()).rejects.toMatchObject({
        code: 'TYPE_UNSUPPORTED',
        message: expect.stringMatching(reason),
      })
      // nothing was published: the application's deletes still work
      await source.upsertMany('coded', [{ id: 1, code: 'c1', label: 'l1' }])
      await source.delete('coded', { id: 1 })

      const everything = new RuleRunner({ ...rule, collections: ['*'] }, source, target)
      await source.upsertMany('items', [{ id: 1, label: 'flows' }])
      const stats = await everything.sync()
      expect(stats.setAside).toEqual([{ collection: 'coded', reason: expect.stringMatching(reason) }])
      expect(await target.find('items')).toEqual([{ id: 1, label: 'flows' }])
      await everything.teardown()
    })
})

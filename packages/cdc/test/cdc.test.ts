import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  connectDialect,
  type CaptureSettings,
  type CollectionSchema,
  type Dialect,
  type Row,
} from '@mostajs/replicator-core'
import { bidirectionalConfigs, RuleRunner, DEAD_LETTERS_COLLECTION } from '@mostajs/replicator-cdc'
import { ReplicationManager } from '@mostajs/replicator'
import {
  expectReplicatorError,
  expectThrownReplicatorError,
  privateServer,
  testBackends,
  type TestBackend,
} from '@mostajs/replicator-testkit/vitest'
import { createMariaDBDatabase, startMariaDB } from '@mostajs/replicator-testkit'

const schema: CollectionSchema = {
  name: 'items',
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'flag', type: 'boolean' },
    { name: 'big', type: 'bigint' },
    { name: 'price', type: 'decimal' },
    { name: 'ratio', type: 'double' },
    { name: 'label', type: 'string' },
    { name: 'body', type: 'text' },
    { name: 'meta', type: 'json' },
    { name: 'at', type: 'timestamp' },
    { name: 'day', type: 'date' },
    { name: 'blob', type: 'binary' },
    { name: 'ref', type: 'uuid' },
  ],
  primaryKey: ['id'],
}

const row = (id: number, variant = 0): Row => ({
  id,
  flag: (id + variant) % 2 === 0,
  big: 9_007_199_254_740_993n + BigInt(id * 1000 + variant),
  price: `${id}.${variant}5`,
  ratio: id / 3 + variant,
  label: `item ${id} v${variant} — ünï`,
  body: 'x'.repeat(id * 10 + variant),
  meta: { id, variant, tags: ['a', 'b'] },
  at: new Date(Date.UTC(2024, 0, 1) + id * 60_000 + variant),
  day: `2024-02-${String((id % 28) + 1).padStart(2, '0')}`,
  blob: Buffer.from([id % 256, variant % 256, 0, 255]),
  ref: `00000000-0000-4000-8000-${String(id).padStart(12, '0')}`,
})
const nulls = (id: number): Row => ({
  id,
  flag: null,
  big: null,
  price: null,
  ratio: null,
  label: null,
  body: null,
  meta: null,
  at: null,
  day: null,
  blob: null,
  ref: null,
})

const backends = testBackends()
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

async function open(backend: TestBackend, capture?: CaptureSettings): Promise<Dialect> {
  const database = await backend.freshDatabase()
  const dialect = await connectDialect({ dialect: backend.kind, uri: database.uri, ...(capture ? { capture } : {}) })
  cleanups.push(async () => {
    await dialect.close()
    await database.cleanup()
  })
  return dialect
}

const parseLsnText = (text: string): bigint => {
  const [high = '0', low = '0'] = text.split('/')
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`)
}
/** Counts the target's COPY loads (the loads themselves are real). */
function countBulkLoads(target: Dialect): { count: number } {
  const counter = { count: 0 }
  const bulk = target.bulk!
  const bulkImport = bulk.import.bind(bulk)
  bulk.import = (...args) => {
    counter.count++
    return bulkImport(...args)
  }
  return counter
}
const byId = (rows: Row[]) => [...rows].sort((a, b) => Number(a.id) - Number(b.id))

/** Capture settings that spill transactions of more than `limit` changes into a fresh directory. */
function spillInto(limit: number): { dir: string; settings: CaptureSettings; restore(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'replicator-spill-test-'))
  return {
    dir,
    settings: { spillAfterChanges: limit, spillDirectory: dir },
    restore() {
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * Makes a PostgreSQL target fail (not a row error: the whole sync fails) when row `id` of
 * `table` is written, until `end()`.
 */
async function failWritesOf(target: Dialect, table: string, id: number): Promise<{ end(): Promise<void> }> {
  await target.query('CREATE TABLE switch (failing boolean)')
  await target.query('INSERT INTO switch VALUES (true)')
  await target.query(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.id = ${id} AND (SELECT failing FROM switch) THEN RAISE EXCEPTION 'the target is unavailable' USING ERRCODE = 'XX000'; END IF; RETURN NEW; END $$`)
  await target.query(
    `CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON "${table}" FOR EACH ROW EXECUTE FUNCTION refuse()`,
  )
  return {
    end: async () => {
      await target.query('UPDATE switch SET failing = false')
    },
  }
}

// Sources: PostgreSQL (logical decoding), MariaDB (ROW binlog), SQLite (triggers).
const sources = [backends.postgres, backends.mariadb, backends.sqlite]
const targets = [backends.postgres, backends.mariadb, backends.sqlite]

describe('CDC: snapshot then streaming, every source × target pair', () => {
  for (const from of sources) {
    for (const to of targets) {
      const reason = !from.serverUrl ? from.skipReason : !to.serverUrl ? to.skipReason : ''
      it.skipIf(Boolean(reason))(
        `${from.kind} → ${to.kind}: inserts, updates, deletes and every portable type arrive${reason ? ` (skipped: ${reason})` : ''}`,
        async () => {
          const source = await open(from)
          const target = await open(to)
          await source.ensureCollection(schema)
          await source.upsertMany('items', [row(1), row(2), row(3), nulls(4)])
          const runner = new RuleRunner(
            {
              name: `pair_${from.kind}_${to.kind}`,
              source: 'a',
              target: 'b',
              mode: 'cdc',
              collections: ['items'],
              batchSize: 50,
            },
            source,
            target,
          )
          try {
            await runner.prepare()
            // written after the capture exists but before the snapshot: must not be lost or doubled
            await source.upsertMany('items', [row(5)])
            let stats = await runner.sync()
            expect(byId(await target.find('items'))).toEqual(byId(await source.find('items')))
            expect(stats.details[0]!.snapshotRows).toBe(5)

            await source.upsertMany('items', [row(6), row(7)])
            await source.update('items', { id: 1 }, row(1, 1))
            await source.update('items', { id: 4 }, { label: 'no longer null', meta: 'plain string', flag: false })
            await source.delete('items', { id: 2 })
            await source.transaction(async (tx) => {
              await tx.insert('items', row(8))
              await tx.update('items', { id: 8 }, row(8, 2))
              await tx.delete('items', { id: 3 })
              await tx.insert('items', row(3, 7)) // deleted and re-created in one transaction
            })
            await source.update('items', { id: 7 }, { id: 70 }) // a key change
            stats = await runner.sync()
            expect(byId(await target.find('items'))).toEqual(byId(await source.find('items')))
            expect(stats.created).toBeGreaterThanOrEqual(4)
            expect(stats.updated).toBeGreaterThanOrEqual(3)
            expect(stats.deleted).toBeGreaterThanOrEqual(2)
            expect(stats.position).not.toBeNull()
            // nothing pending: a second sync changes nothing
            const again = await runner.sync()
            expect(again.recordsSynced).toBe(stats.recordsSynced)
            expect(byId(await target.find('items'))).toEqual(byId(await source.find('items')))
          } finally {
            await runner.teardown()
          }
          if (from.kind === 'postgres')
            expect(
              await source.query(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'replicator_pair%'`),
            ).toEqual([])
          if (from.kind === 'mariadb') expect(await source.find('_replicator_captures')).toEqual([])
          if (from.kind === 'sqlite')
            expect(await source.query(`SELECT name FROM sqlite_schema WHERE name LIKE '_replicator_pair%'`)).toEqual([])
        },
      )
    }
  }
})

describe.skipIf(!backends.postgres.serverUrl)(
  'a batch that fails half-way, while the next one was already read',
  () => {
    for (const from of sources) {
      it.skipIf(!from.serverUrl)(
        `${from.kind} → postgres: the next sync starts again from the last applied batch; nothing is lost or doubled${from.serverUrl ? '' : ` (skipped: ${from.skipReason})`}`,
        async () => {
          const source = await open(from)
          const target = await open(backends.postgres)
          const numbers: CollectionSchema = {
            name: 'numbers',
            columns: [
              { name: 'id', type: 'integer' },
              { name: 'v', type: 'integer' },
            ],
            primaryKey: ['id'],
          }
          await source.ensureCollection(numbers)
          await target.ensureCollection(numbers)
          const outage = await failWritesOf(target, 'numbers', 15_000)
          const runner = new RuleRunner(
            {
              name: `halfway_${from.kind}`,
              source: 'a',
              target: 'b',
              mode: 'cdc',
              collections: ['numbers'],
              batchSize: 1000,
            },
            source,
            target,
          )
          try {
            await runner.prepare()
            await runner.sync()
            // 25,000 changes in 50 transactions: more than one read, so a read-ahead is under way when the apply fails
            for (let first = 1; first <= 25_000; first += 500)
              await source.upsertMany(
                'numbers',
                Array.from({ length: 500 }, (_, index) => ({ id: first + index, v: first + index })),
              )
            await expect(runner.sync()).rejects.toThrow(/the target is unavailable/)
            const partial = await target.count('numbers')
            // a SQLite changelog does not say where its transactions end: all it held when read
            // is applied as one target transaction, so nothing of it landed
            if (from.kind === 'sqlite') expect(partial).toBe(0)
            else expect(partial).toBeGreaterThan(0)
            expect(partial).toBeLessThan(15_000)
            await outage.end()
            const stats = await runner.sync()
            expect(await target.count('numbers')).toBe(25_000)
            const [sums] = await target.query<{ ids: string; vs: string }>(
              'SELECT sum(id)::text AS ids, sum(v)::text AS vs FROM numbers',
            )
            expect(sums).toEqual({ ids: String((25_000 * 25_001) / 2), vs: String((25_000 * 25_001) / 2) })
            expect(stats.created).toBe(25_000) // each change counted once: the failed batch was not counted
          } finally {
            await runner.teardown()
          }
        },
      )
    }
  },
)

describe.skipIf(!privateServer('mariadb').available)(`CDC on MariaDB${privateServer('mariadb').skipNote}`, () => {
  it('refuses to capture when binlog_format is not ROW, saying what to change', async () => {
    const server = await startMariaDB({ flags: ['--binlog-format=MIXED'] })
    try {
      const source = await connectDialect({
        dialect: 'mariadb',
        uri: (await createMariaDBDatabase(server.url, 'mixed')).replace(/^mysql:/, 'mariadb:'),
      })
      try {
        await source.ensureCollection(schema)
        const runner = new RuleRunner(
          { name: 'mixed', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
          source,
          await open(backends.sqlite),
        )
        const error = await expectReplicatorError(runner.prepare(), 'NOT_SUPPORTED')
        expect(error.message).toMatch(/binlog_format is MIXED.*ROW/)
      } finally {
        await source.close()
      }
    } finally {
      await server.stop()
    }
  })

  it('a transaction larger than memory allows is spilled to disk with every type intact and applied whole, in one target transaction', async () => {
    const spill = spillInto(50)
    const source = await open(backends.mariadb, spill.settings)
    const target = await open(backends.postgres)
    await source.ensureCollection(schema)
    const runner = new RuleRunner(
      { name: 'spill', source: 'a', target: 'b', mode: 'cdc', collections: ['items'], batchSize: 20 },
      source,
      target,
    )
    try {
      await runner.prepare() // creates the target table
      const outage = await failWritesOf(target, 'items', 250)
      await runner.sync()
      await source.transaction(async (tx) => {
        // 300 inserts, updates and deletes, and JSON that looks like the spill file's tags
        await tx.upsertMany(
          'items',
          Array.from({ length: 300 }, (_, index) => row(index + 1)),
        )
        await tx.upsertMany('items', [
          { ...row(7, 3), meta: { $date: 'not a date', $obj: [1], nested: { $big: '12' } } },
          nulls(8),
        ])
        await tx.deleteMany('items', [9, 10])
      })
      await expect(runner.sync()).rejects.toThrow(/the target is unavailable/)
      expect(await target.count('items')).toBe(0) // none of its parts is visible: one target transaction
      expect(readdirSync(spill.dir)).toHaveLength(1)
      await outage.end()
      await runner.sync()
      expect(byId(await target.find('items'))).toEqual(byId(await source.find('items')))
      expect((await target.findOne('items', { id: 7 }))!.meta).toEqual({
        $date: 'not a date',
        $obj: [1],
        nested: { $big: '12' },
      })
      expect(readdirSync(spill.dir)).toEqual([]) // removed once applied
    } finally {
      await runner.teardown()
      spill.restore()
    }
  })

  it('a backlog larger than the binlog buffer: reading pauses while it is full, resumes as it drains, and every change arrives', async () => {
    const source = await open(backends.mariadb, { binlogBufferEvents: 100 })
    const target = await open(backends.sqlite)
    try {
      const numbers: CollectionSchema = {
        name: 'numbers',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'v', type: 'integer' },
        ],
        primaryKey: ['id'],
      }
      await source.ensureCollection(numbers)
      const runner = new RuleRunner(
        { name: 'backlog', source: 'a', target: 'b', mode: 'cdc', collections: ['numbers'], batchSize: 40 },
        source,
        target,
      )
      await runner.prepare()
      await runner.sync()
      for (let first = 1; first <= 1500; first += 50)
        await source.upsertMany(
          'numbers',
          Array.from({ length: 50 }, (_, index) => ({ id: first + index, v: first + index })),
        )
      // Read without confirming: the reader stopped once it held 100 events (a transaction is never split).
      const held = await source.capture!.read('backlog', { after: null, maxEvents: 100_000 })
      expect(held.events.length).toBeGreaterThan(0)
      expect(held.events.length).toBeLessThanOrEqual(150)
      const stats = await runner.sync()
      expect(stats.created).toBe(1500)
      expect(byId(await target.find('numbers'))).toEqual(byId(await source.find('numbers')))
      await runner.teardown()
    } finally {
      await target.close().catch(() => undefined) // closed again by the file's cleanup: harmless
    }
  })
})

describe.skipIf(!backends.postgres.serverUrl)(
  `CDC on PostgreSQL${backends.postgres.serverUrl ? '' : ` (skipped: ${backends.postgres.skipReason})`}`,
  () => {
    it('a row the target rejects goes to the dead-letter table; later rows still arrive', async () => {
      const source = await open(backends.postgres)
      const target = await open(backends.postgres)
      await source.ensureCollection(schema)
      const runner = new RuleRunner(
        { name: 'poison', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
        source,
        target,
      )
      await runner.prepare()
      try {
        await runner.sync()
        await target.query('ALTER TABLE items ALTER COLUMN label SET NOT NULL') // the target is stricter than the source
        await source.upsertMany('items', [row(1), { ...row(2), label: null }, row(3)])
        await source.upsertMany('items', [row(4)])
        const stats = await runner.sync()
        expect((await target.find('items', {}, { sort: { id: 1 } })).map((item) => item.id)).toEqual([1, 3, 4])
        expect(stats.deadLettered).toBe(1)
        const letters = await target.find(DEAD_LETTERS_COLLECTION)
        expect(letters).toHaveLength(1)
        expect(letters[0]).toMatchObject({ rule: 'poison', collection: 'items', row_key: '2' })
        expect(String(letters[0]!.error)).toMatch(/null/i)
        expect(JSON.parse(String(letters[0]!.event)).after.label).toBeNull()
      } finally {
        await runner.teardown()
      }
    })

    it('refuses a column it cannot carry, with a compatibility report', async () => {
      const source = await open(backends.postgres)
      const target = await open(backends.sqlite)
      await source.query('CREATE TABLE shapes (id integer PRIMARY KEY, area point, name text)')
      const runner = new RuleRunner(
        { name: 'shapes', source: 'a', target: 'b', mode: 'cdc', collections: ['shapes'] },
        source,
        target,
      )
      const error = await expectReplicatorError(runner.prepare(), 'TYPE_UNSUPPORTED')
      expect(error.message).toContain('shapes.area (point)')
      expect(
        await source.query(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'replicator_shapes%'`),
      ).toEqual([])
    })

    it('through the ReplicationManager: rules API, stats, persistence, removal leaves no slot', async () => {
      const sourceDb = await backends.postgres.freshDatabase()
      const targetDb = await backends.sqlite.freshDatabase()
      const rm = new ReplicationManager(null, { heartbeatIntervalMs: 100 })
      cleanups.push(async () => {
        await rm.disconnectAll()
      })
      await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: sourceDb.uri })
      await rm.addReplica('analytics', { name: 'main', role: 'master', dialect: 'sqlite', uri: targetDb.uri })
      const shop = rm.resolveWriteService('shop')
      await shop.dialect.ensureCollection({
        name: 'users',
        columns: [
          { name: 'id', type: 'string' },
          { name: 'email', type: 'string' },
          { name: 'vip', type: 'boolean' },
        ],
        primaryKey: ['id'],
      })
      await shop.create('users', { id: 'u1', email: 'a@example.com', vip: true })
      await rm.addReplicationRule({
        name: 'users-to-analytics',
        source: 'shop',
        target: 'analytics',
        mode: 'cdc',
        collections: ['users'],
        conflictResolution: 'source-wins',
      })
      expectThrownReplicatorError(
        () =>
          rm.addReplicationRule({
            name: 'users-to-analytics',
            source: 'shop',
            target: 'analytics',
            mode: 'cdc',
            collections: ['users'],
          }),
        'CONFIG_INVALID',
      )
      expectThrownReplicatorError(
        () =>
          rm.addReplicationRule({
            name: 'bad',
            source: 'shop',
            target: 'nowhere',
            mode: 'cdc',
            collections: ['users'],
          }),
        'REPLICA_NOT_FOUND',
      )
      expect(rm.getSyncStats('users-to-analytics').lastSync).toBeNull()
      await rm.sync('users-to-analytics')
      await shop.create('users', { id: 'u2', email: 'b@example.com', vip: false })
      await shop.delete('users', 'u1')
      const stats = await rm.sync('users-to-analytics')
      expect(stats).toMatchObject({ ruleName: 'users-to-analytics', created: 1, deleted: 1 })
      expect(stats.lastSync).toBeInstanceOf(Date)
      expect(await rm.resolveWriteService('analytics').findAll('users')).toEqual([
        { id: 'u2', email: 'b@example.com', vip: false },
      ])
      expect(rm.listRules().map((rule) => rule.name)).toEqual(['users-to-analytics'])
      await expectReplicatorError(rm.sync('no-such-rule'), 'CONFIG_INVALID')
      await rm.removeReplicationRule('users-to-analytics')
      expect(rm.listRules()).toEqual([])
      expect(
        await shop.dialect.query(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'replicator_users%'`),
      ).toEqual([])
    })
  },
)

describe('snapshot mode: a full mirror on each sync, deletes included', () => {
  const pairs = [
    [backends.postgres, backends.mariadb],
    [backends.sqlite, backends.postgres],
    [backends.mariadb, backends.sqlite],
  ] as const
  for (const [from, to] of pairs) {
    const reason = !from.serverUrl ? from.skipReason : !to.serverUrl ? to.skipReason : ''
    it.skipIf(Boolean(reason))(
      `${from.kind} → ${to.kind}: uuid and composite keys, rows removed at the source vanish from the target${reason ? ` (skipped: ${reason})` : ''}`,
      async () => {
        const source = await open(from)
        const target = await open(to)
        await source.ensureCollection({
          name: 'tokens',
          columns: [
            { name: 'id', type: 'uuid' },
            { name: 'owner', type: 'string' },
          ],
          primaryKey: ['id'],
        })
        await source.ensureCollection({
          name: 'grid',
          columns: [
            { name: 'x', type: 'integer' },
            { name: 'y', type: 'string' },
            { name: 'v', type: 'double' },
          ],
          primaryKey: ['x', 'y'],
        })
        const ids = Array.from(
          { length: 2500 },
          (_, i) =>
            `${((i * 2654435761) % 4294967296).toString(16).padStart(8, '0')}-0000-4000-8000-${String(i).padStart(12, '0')}`,
        )
        await source.upsertMany(
          'tokens',
          ids.map((id, i) => ({ id, owner: `o${i}` })),
        )
        await source.upsertMany(
          'grid',
          Array.from({ length: 600 }, (_, i) => ({ x: i % 30, y: `r${Math.floor(i / 30)}`, v: i / 4 })),
        )
        const runner = new RuleRunner(
          {
            name: `mirror_${from.kind}_${to.kind}`,
            source: 'a',
            target: 'b',
            mode: 'snapshot',
            collections: ['tokens', 'grid'],
            batchSize: 400,
          },
          source,
          target,
        )
        await runner.sync()
        expect(await target.count('tokens')).toBe(2500)
        await source.deleteMany(
          'tokens',
          ids.filter((_, i) => i % 7 === 0),
        )
        await source.delete('grid', { x: { $lt: 5 } })
        await source.update('tokens', { id: ids[1]! }, { owner: 'changed' })
        await target.upsertMany('tokens', [{ id: 'ffffffff-ffff-4fff-8fff-ffffffffffff', owner: 'only on the target' }])
        const stats = await runner.sync()
        const sortTokens = (rows: Row[]) => [...rows].sort((a, b) => String(a.id).localeCompare(String(b.id)))
        expect(sortTokens(await target.find('tokens'))).toEqual(sortTokens(await source.find('tokens')))
        const sortGrid = (rows: Row[]) =>
          [...rows].sort((a, b) => Number(a.x) - Number(b.x) || String(a.y).localeCompare(String(b.y)))
        expect(sortGrid(await target.find('grid'))).toEqual(sortGrid(await source.find('grid')))
        expect(stats.deleted).toBe(Math.ceil(2500 / 7) + 1 + 100)
        await runner.teardown()
      },
    )
  }
})

describe.skipIf(!backends.postgres.serverUrl)('conflict resolution', () => {
  const notes: CollectionSchema = {
    name: 'notes',
    columns: [
      { name: 'id', type: 'integer' },
      { name: 'text', type: 'string' },
      { name: 'updatedAt', type: 'timestamp' },
    ],
    primaryKey: ['id'],
  }
  const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute))

  it("'timestamp': the newer updatedAt wins, per row; older source changes are skipped and counted", async () => {
    const source = await open(backends.postgres)
    const target = await open(backends.sqlite)
    await source.ensureCollection(notes)
    await source.upsertMany('notes', [
      { id: 1, text: 'a', updatedAt: at(1) },
      { id: 2, text: 'b', updatedAt: at(1) },
    ])
    const runner = new RuleRunner(
      { name: 'lww', source: 'a', target: 'b', mode: 'cdc', collections: ['notes'], conflictResolution: 'timestamp' },
      source,
      target,
    )
    await runner.prepare()
    await runner.sync()
    await target.update('notes', { id: 1 }, { text: 'edited on the target', updatedAt: at(10) }) // newer than what comes next
    await source.update('notes', { id: 1 }, { text: 'older source edit', updatedAt: at(5) })
    await source.update('notes', { id: 2 }, { text: 'newer source edit', updatedAt: at(20) })
    await source.insert('notes', { id: 3, text: 'new', updatedAt: at(2) })
    const stats = await runner.sync()
    expect(await target.find('notes', {}, { sort: { id: 1 } })).toEqual([
      { id: 1, text: 'edited on the target', updatedAt: at(10) },
      { id: 2, text: 'newer source edit', updatedAt: at(20) },
      { id: 3, text: 'new', updatedAt: at(2) },
    ])
    expect(stats.skipped).toBe(1)
    await runner.teardown()
    const noColumn = new RuleRunner(
      {
        name: 'lww2',
        source: 'a',
        target: 'b',
        mode: 'cdc',
        collections: ['notes'],
        conflictResolution: 'timestamp',
        timestampColumn: 'modified',
      },
      source,
      target,
    )
    await expectReplicatorError(noColumn.prepare(), 'CONFIG_INVALID')
  })

  it("'target-wins': existing target rows are never overwritten or deleted; new rows arrive", async () => {
    const source = await open(backends.postgres)
    const target = await open(backends.mariadb.serverUrl ? backends.mariadb : backends.sqlite)
    await source.ensureCollection(notes)
    await source.upsertMany('notes', [{ id: 1, text: 'a', updatedAt: at(1) }])
    const runner = new RuleRunner(
      { name: 'tw', source: 'a', target: 'b', mode: 'cdc', collections: ['notes'], conflictResolution: 'target-wins' },
      source,
      target,
    )
    await runner.prepare()
    await runner.sync()
    await source.update('notes', { id: 1 }, { text: 'source edit' })
    await source.insert('notes', { id: 2, text: 'fresh', updatedAt: at(3) })
    await source.delete('notes', { id: 1 })
    const stats = await runner.sync()
    expect(await target.find('notes', {}, { sort: { id: 1 } })).toEqual([
      { id: 1, text: 'a', updatedAt: at(1) },
      { id: 2, text: 'fresh', updatedAt: at(3) },
    ])
    expect(stats.skipped).toBeGreaterThanOrEqual(1)
    await runner.teardown()
  })
})

describe.skipIf(!backends.postgres.serverUrl)('PostgreSQL specifics', () => {
  it('an update that leaves a TOASTed value unchanged never writes a placeholder over it', async () => {
    const source = await open(backends.postgres)
    const target = await open(backends.sqlite)
    await source.ensureCollection({
      name: 'docs',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'title', type: 'string' },
        { name: 'body', type: 'text' },
      ],
      primaryKey: ['id'],
    })
    await source.query('ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL') // out of line, uncompressed: TOASTed for sure
    const body = Array.from({ length: 20_000 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 90))).join('')
    const runner = new RuleRunner(
      { name: 'toast', source: 'a', target: 'b', mode: 'cdc', collections: ['docs'] },
      source,
      target,
    )
    await runner.prepare()
    await runner.sync()
    await source.insert('docs', { id: 1, title: 'first', body })
    await runner.sync()
    await source.update('docs', { id: 1 }, { title: 'renamed' }) // pgoutput sends body as "unchanged TOAST"
    const pending = await source.capture!.read('toast', { after: null, maxEvents: 10 })
    expect(pending.events.map((event) => [event.op, Object.keys(event.after ?? {}).sort()])).toEqual([
      ['u', ['id', 'title']],
    ]) // the value was not sent
    await runner.sync()
    expect(await target.findOne('docs', { id: 1 })).toEqual({ id: 1, title: 'renamed', body })
    await runner.teardown()
  })

  it('the replication stream reports only confirmed positions as flushed: changes handed out but not applied stay in the slot', async () => {
    const database = await backends.postgres.freshDatabase()
    const connect = () => connectDialect({ dialect: 'postgres', uri: database.uri })
    let source = await connect()
    await source.ensureCollection({
      name: 'notes',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'text', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await source.capture!.setup({ name: 'acks', collections: ['notes'] })
    const confirmedFlush = async () => {
      const [row] = await source.query<{ lsn: string }>(
        `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name LIKE 'replicator_acks_%'`,
      )
      return parseLsnText(row!.lsn)
    }
    try {
      const before = await confirmedFlush()
      for (let id = 1; id <= 3; id++) await source.insert('notes', { id, text: `n${id}` }) // three transactions
      const first = await source.capture!.read('acks', { after: null, maxEvents: 1 })
      expect(first.events.map((event) => event.key)).toEqual([1])
      const pending = await source.capture!.read('acks', { after: null, maxEvents: 100 }) // not confirmed: handed out again
      expect(pending.events.map((event) => event.key)).toEqual([1, 2, 3])
      await new Promise((resolve) => setTimeout(resolve, 300)) // keepalive pings went back and forth meanwhile
      expect(await confirmedFlush()).toBe(before)
      const firstOnly = first.events[0]!.source.position
      await source.capture!.confirm('acks', firstOnly)
      const firstLsn = parseLsnText(String(firstOnly.value))
      const deadline = Date.now() + 10_000
      while ((await confirmedFlush()) < firstLsn && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 50))
      expect(await confirmedFlush()).toBe(firstLsn)
      // a new session (a restarted process) gets exactly what was not confirmed
      await source.close()
      source = await connect()
      const again = await source.capture!.read('acks', { after: null, maxEvents: 100 })
      expect(again.events.map((event) => event.key)).toEqual([2, 3])
    } finally {
      await source.capture!.drop('acks')
      await source.close()
    }
  })

  it('a source transaction larger than memory allows is spilled to disk and still applied whole, in one target transaction', async () => {
    const spill = spillInto(50)
    const source = await open(backends.postgres, spill.settings)
    const target = await open(backends.postgres)
    const numbers: CollectionSchema = {
      name: 'bulk',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'v', type: 'string' },
      ],
      primaryKey: ['id'],
    }
    await source.ensureCollection(numbers)
    await target.ensureCollection(numbers)
    const outage = await failWritesOf(target, 'bulk', 400)
    const runner = new RuleRunner(
      { name: 'spill', source: 'a', target: 'b', mode: 'cdc', collections: ['bulk'], batchSize: 10 },
      source,
      target,
    )
    try {
      await runner.prepare()
      await runner.sync()
      await source.transaction(async (tx) => {
        // 500 inserts, 100 updates and 50 deletes in one transaction
        await tx.upsertMany(
          'bulk',
          Array.from({ length: 500 }, (_, index) => ({ id: index + 1, v: `v${index + 1}` })),
        )
        await tx.query(`UPDATE bulk SET v = v || ' changed' WHERE id <= 100`)
        await tx.query('DELETE FROM bulk WHERE id > 450')
      })
      await source.upsertMany('bulk', [{ id: 1000, v: 'a later, small transaction' }])
      await expect(runner.sync()).rejects.toThrow(/the target is unavailable/)
      expect(await target.count('bulk')).toBe(0) // none of its parts is visible: one target transaction
      expect(readdirSync(spill.dir)).toHaveLength(1) // it did go to disk
      await outage.end()
      const stats = await runner.sync()
      expect(byId(await target.find('bulk'))).toEqual(byId(await source.find('bulk')))
      expect(await target.count('bulk')).toBe(451)
      expect(stats.deadLettered).toBe(0)
      expect(readdirSync(spill.dir)).toEqual([]) // removed once read
    } finally {
      await runner.teardown()
      spill.restore()
    }
  })

  it('a snapshot into an empty PostgreSQL table streams COPY into COPY: every type, escapes and NULLs arrive exactly', async () => {
    const source = await open(backends.postgres)
    const target = await open(backends.postgres)
    const bulkLoads = countBulkLoads(target)
    await source.ensureCollection(schema)
    const awkward = ['tab\there', 'new\nline', 'back\\slash', '\\N', 'NULL', '', 'ünï 🚀', 'quote "x" \'y\'', 'cr\r\n']
    await source.upsertMany('items', [
      ...Array.from({ length: 2000 }, (_, index) => ({ ...row(index + 1), label: awkward[index % awkward.length]! })),
      nulls(5000),
    ])
    const progress: number[] = []
    const runner = new RuleRunner(
      { name: 'bulk_copy', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
      source,
      target,
      { snapshotProgress: (info) => progress.push(info.done) },
    )
    await runner.prepare()
    const stats = await runner.sync()
    expect(bulkLoads.count).toBe(1)
    expect(stats.details[0]!.snapshotRows).toBe(2001)
    expect(progress[progress.length - 1]).toBe(2001)
    expect(byId(await target.find('items'))).toEqual(byId(await source.find('items')))
    // streaming continues from the capture as usual
    await source.delete('items', { id: 1 })
    await runner.sync()
    expect(await target.count('items')).toBe(2000)
    await runner.teardown()
  })

  it('PostgreSQL → PostgreSQL streams the source text as it is: microseconds, numeric digits, escapes and bytes arrive exactly', async () => {
    const source = await open(backends.postgres)
    const target = await open(backends.postgres)
    // the same native types on both sides (what the native pass-through needs)
    const ddl = `CREATE TABLE exact (id integer PRIMARY KEY, at timestamp(6), atz timestamptz(6), n numeric(40,15), f double precision, t text, j jsonb, b bytea, flag boolean, d date, u uuid)`
    await source.query(ddl)
    await target.query(ddl)
    const runner = new RuleRunner(
      { name: 'exact', source: 'a', target: 'b', mode: 'cdc', collections: ['exact'], batchSize: 7 },
      source,
      target,
    )
    const asText = (dialect: Dialect) =>
      dialect.query<{ row: string }>('SELECT exact::text AS row FROM exact ORDER BY id')
    const awkward = [
      'tab\there',
      'new\nline',
      'back\\slash',
      '\\N',
      'NULL',
      '',
      'ünï 🚀 \u0001',
      'quote "x" \'y\'',
      'cr\r\n',
      '{a,b}',
      '\\\\',
    ]
    const insertRow = (id: number, variant: number) =>
      source.query(
        `INSERT INTO exact VALUES ($1, '2024-02-29 23:59:59.123456'::timestamp + $2 * interval '1 microsecond', '1999-12-31 23:59:59.999999+05:30'::timestamptz + $2 * interval '1 microsecond',
        ('123456789012345678901234.' || lpad($2::text, 15, '0'))::numeric, $3, $4, $5::jsonb, $6, $7, '2024-01-31', $8)`,
        [
          id,
          variant,
          [1e308, -0.1, 5e-324, Math.PI, -1.5e-7][variant % 5],
          awkward[variant % awkward.length],
          JSON.stringify({ text: awkward[variant % awkward.length], n: [1, null, 'é'] }),
          Buffer.from([0, 92, 9, 10, 13, 255, variant % 256]),
          variant % 3 === 0 ? null : variant % 2 === 0,
          `00000000-0000-4000-8000-${String(variant).padStart(12, '0')}`,
        ],
      )
    try {
      await runner.prepare()
      await runner.sync()
      for (let id = 1; id <= 30; id++) await insertRow(id, id) // inserts: loaded with COPY
      await source.query('INSERT INTO exact (id) VALUES (31)') // every column NULL but the key
      await runner.sync()
      expect(await asText(target)).toEqual(await asText(source))
      expect((await asText(target))[0]!.row).toContain('23:59:59.123457') // microseconds kept (portable values stop at milliseconds)

      // updates and deletes (upserts of the source text), an insert then update of one key in one
      // transaction, and an insert of a key the target already has (the COPY falls back)
      await target.query(`INSERT INTO exact (id, t) VALUES (40, 'stale on the target')`)
      await source.transaction(async (tx) => {
        for (let id = 1; id <= 10; id++)
          await tx.query(
            `UPDATE exact SET t = $2, n = n + 0.000000000000001, at = at + interval '1 microsecond' WHERE id = $1`,
            [id, awkward[(id + 3) % awkward.length]],
          )
        await tx.query('DELETE FROM exact WHERE id IN (11, 12)')
        await tx.query(`INSERT INTO exact (id, t, j) VALUES (41, 'new', '{"k": "v\\"q"}')`)
        await tx.query(`UPDATE exact SET t = 'new, then changed' WHERE id = 41`)
      })
      await source.query(`INSERT INTO exact (id, t) VALUES (40, 'from the source')`)
      const stats = await runner.sync()
      expect(await asText(target)).toEqual(await asText(source))
      expect(stats.deadLettered).toBe(0)
    } finally {
      await runner.teardown()
    }
  })

  it('a snapshot into a table that already holds rows takes the row-by-row upsert path', async () => {
    const source = await open(backends.postgres)
    const target = await open(backends.postgres)
    const bulkLoads = countBulkLoads(target)
    await source.ensureCollection(schema)
    await source.upsertMany('items', [row(1), row(2)])
    await target.ensureCollection(schema)
    await target.upsertMany('items', [row(2, 9), row(99)]) // stale row 2 and a row the source never had
    const runner = new RuleRunner(
      { name: 'bulk_nonempty', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
      source,
      target,
    )
    await runner.prepare()
    await runner.sync()
    expect(bulkLoads.count).toBe(0)
    expect(byId(await target.find('items'))).toEqual(byId([row(1), row(2), row(99)])) // upserted; a cdc snapshot deletes nothing
    await runner.teardown()
  })
})

describe('bidirectional rules', () => {
  const sides = [
    [backends.postgres, backends.sqlite],
    [backends.mariadb, backends.postgres],
  ] as const
  for (const [left, right] of sides) {
    for (const order of ['forward first', 'reverse first'] as const) {
      const reason = !left.serverUrl ? left.skipReason : !right.serverUrl ? right.skipReason : ''
      it.skipIf(Boolean(reason))(
        `${left.kind} ↔ ${right.kind}, ${order}: a delete on one side and an update on the other resolve by time, whichever way they cross${reason ? ` (skipped: ${reason})` : ''}`,
        async () => {
          const a = await open(left)
          const b = await open(right)
          await a.ensureCollection({
            name: 'notes',
            columns: [
              { name: 'id', type: 'integer' },
              { name: 'text', type: 'string' },
              { name: 'updatedAt', type: 'timestamp' },
            ],
            primaryKey: ['id'],
          })
          const [forwardConfig, reverseConfig] = bidirectionalConfigs({
            name: `bd_${left.kind}_${order[0]}`,
            source: 'a',
            target: 'b',
            mode: 'bidirectional',
            collections: ['notes'],
            conflictResolution: 'timestamp',
          })
          const forward = new RuleRunner(forwardConfig, a, b)
          const reverse = new RuleRunner(reverseConfig, b, a)
          const syncBoth = async () => {
            for (const runner of order === 'forward first' ? [forward, reverse] : [reverse, forward])
              await runner.sync()
          }
          try {
            await forward.prepare()
            await reverse.prepare()
            const now = Date.now()
            await a.upsertMany(
              'notes',
              [1, 2, 3, 4].map((id) => ({ id, text: 'first', updatedAt: new Date(now - 600_000) })),
            )
            await syncBoth()
            await syncBoth()
            expect(await b.count('notes')).toBe(4)
            // 1: deleted on a, updated on b a minute before the delete → deleted on both
            // 2: deleted on a, updated on b a minute after it → kept on both, with b's update
            // 3, 4: the same, the sides swapped
            await b.update('notes', { id: 1 }, { text: 'older update on b', updatedAt: new Date(now - 60_000) })
            await b.update('notes', { id: 2 }, { text: 'newer update on b', updatedAt: new Date(now + 60_000) })
            await a.update('notes', { id: 3 }, { text: 'older update on a', updatedAt: new Date(now - 60_000) })
            await a.update('notes', { id: 4 }, { text: 'newer update on a', updatedAt: new Date(now + 60_000) })
            await a.delete('notes', { id: { $in: [1, 2] } })
            await b.delete('notes', { id: { $in: [3, 4] } })
            for (let round = 0; round < 3; round++) await syncBoth()
            const rowsOf = async (side: Dialect) =>
              (await side.find('notes', {}, { sort: { id: 1 } })).map((row) => `${String(row.id)}:${String(row.text)}`)
            expect(await rowsOf(a)).toEqual(['2:newer update on b', '4:newer update on a'])
            expect(await rowsOf(b)).toEqual(await rowsOf(a))
            // a write older than a delete that both sides already applied (an offline client
            // catching up) does not bring the row back; a newer one does
            await b.upsertMany('notes', [
              { id: 1, text: 'late, older write', updatedAt: new Date(now - 30_000) },
              { id: 3, text: 'late, newer write', updatedAt: new Date(now + 120_000) },
            ])
            for (let round = 0; round < 3; round++) await syncBoth()
            expect(await rowsOf(a)).toEqual(['2:newer update on b', '3:late, newer write', '4:newer update on a'])
            expect(await rowsOf(b)).toEqual(await rowsOf(a))
            // and quiet: nothing left to apply in either direction
            const before = [forward.getStats().recordsSynced, reverse.getStats().recordsSynced]
            await syncBoth()
            expect([forward.getStats().recordsSynced, reverse.getStats().recordsSynced]).toEqual(before)
          } finally {
            await forward.teardown()
            await reverse.teardown()
          }
        },
      )
    }
  }
  for (const [left, right] of sides) {
    const reason = !left.serverUrl ? left.skipReason : !right.serverUrl ? right.skipReason : ''
    it.skipIf(Boolean(reason))(
      `${left.kind} ↔ ${right.kind} with writes on both sides converges (last writer wins, ties agreed) and stops: no update loop${reason ? ` (skipped: ${reason})` : ''}`,
      async () => {
        const shopDb = await left.freshDatabase()
        const edgeDb = await right.freshDatabase()
        const rm = new ReplicationManager(null, { heartbeatIntervalMs: 200 })
        cleanups.push(async () => {
          await rm.disconnectAll()
        })
        await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: left.kind, uri: shopDb.uri })
        await rm.addReplica('edge', { name: 'local', role: 'master', dialect: right.kind, uri: edgeDb.uri })
        const shop = rm.resolveWriteService('shop').dialect
        const edge = rm.resolveWriteService('edge').dialect
        await shop.ensureCollection({
          name: 'notes',
          columns: [
            { name: 'id', type: 'integer' },
            { name: 'text', type: 'string' },
            { name: 'updatedAt', type: 'timestamp' },
          ],
          primaryKey: ['id'],
        })
        expectThrownReplicatorError(
          () =>
            rm.addReplicationRule({
              name: 'both',
              source: 'shop',
              target: 'edge',
              mode: 'bidirectional',
              collections: ['notes'],
            }),
          'CONFIG_INVALID',
        )
        await rm.addReplicationRule({
          name: 'both',
          source: 'shop',
          target: 'edge',
          mode: 'bidirectional',
          collections: ['notes'],
          conflictResolution: 'timestamp',
        })
        const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute))
        await shop.upsertMany(
          'notes',
          Array.from({ length: 40 }, (_, i) => ({ id: i, text: `shop ${i}`, updatedAt: at(1) })),
        )
        await rm.sync('both')
        // concurrent writes on both sides, some on the same rows
        await Promise.all([
          (async () => {
            await shop.upsertMany(
              'notes',
              Array.from({ length: 20 }, (_, i) => ({ id: 100 + i, text: `shop new ${i}`, updatedAt: at(2) })),
            )
            await shop.update('notes', { id: 10 }, { text: 'shop edit', updatedAt: at(5) })
            await shop.update('notes', { id: 20 }, { text: 'shop edit', updatedAt: at(9) })
            await shop.update('notes', { id: 30 }, { text: 'shop tie', updatedAt: at(4) })
            await shop.delete('notes', { id: 5 })
          })(),
          (async () => {
            await edge.upsertMany(
              'notes',
              Array.from({ length: 20 }, (_, i) => ({ id: 200 + i, text: `edge new ${i}`, updatedAt: at(2) })),
            )
            await edge.update('notes', { id: 10 }, { text: 'edge edit', updatedAt: at(7) })
            await edge.update('notes', { id: 20 }, { text: 'edge edit', updatedAt: at(3) })
            await edge.update('notes', { id: 30 }, { text: 'edge tie', updatedAt: at(4) })
            await edge.delete('notes', { id: 6 })
          })(),
        ])
        for (let round = 0; round < 3; round++) await rm.sync('both')
        const shopRows = await shop.find('notes', {}, { sort: { id: 1 } })
        expect(await edge.find('notes', {}, { sort: { id: 1 } })).toEqual(shopRows)
        expect(shopRows).toHaveLength(40 + 20 + 20 - 2)
        expect(shopRows.find((row) => row.id === 10)?.text).toBe('edge edit')
        expect(shopRows.find((row) => row.id === 20)?.text).toBe('shop edit')
        expect(['shop tie', 'edge tie']).toContain(shopRows.find((row) => row.id === 30)?.text)
        // converged and quiet: another round applies nothing in either direction
        const before = rm.getSyncStats('both')
        const after = await rm.sync('both')
        expect(after.recordsSynced).toBe(before.recordsSynced)
        expect(after.reverse!.recordsSynced).toBe(before.reverse!.recordsSynced)
        expect(after.skipped + after.reverse!.skipped).toBe(before.skipped + before.reverse!.skipped)
        await rm.removeReplicationRule('both')
        if (left.kind === 'postgres')
          expect(
            await shop.query(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'replicator_both%'`),
          ).toEqual([])
      },
    )
  }
})

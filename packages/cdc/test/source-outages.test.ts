import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, type Dialect, type Row } from '@mostajs/replicator-core'
import { RuleRunner } from '@mostajs/replicator-cdc'
import {
  createMariaDBDatabase,
  sqliteFile,
  startMariaDB,
  startPostgres,
  type RunningMariaDB,
  type RunningPostgres,
} from '@mostajs/replicator-testkit'
import { privateServer } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('postgres')
const mariadb = privateServer('mariadb')

// Sources that go away under a rule. A slot that held more WAL than max_slot_wal_keep_size is
// invalidated by PostgreSQL, and binary logs are purged: the changes they held are gone. The
// rule must say so and re-seed by itself, never read on as if nothing had happened, nor fail
// for good. A server that restarts loses nothing: the rule goes on from its slot.

describe.skipIf(!available)(`a PostgreSQL slot invalidated by max_slot_wal_keep_size${skipNote}`, () => {
  let server: RunningPostgres | undefined
  const dialects: Dialect[] = []
  const file = sqliteFile('lost-capture.db')
  afterAll(async () => {
    for (const dialect of dialects) await dialect.close().catch(() => undefined)
    await server?.stop()
    file.cleanup()
  })

  it('the rule recreates its capture, re-seeds the target (deletes included) and goes on', async () => {
    server = await startPostgres()
    const source = await connectDialect({ dialect: 'postgres', uri: await server.createDatabase('shop') })
    const target = await connectDialect({ dialect: 'sqlite', uri: file.uri })
    dialects.push(source, target)
    await source.query("ALTER SYSTEM SET max_slot_wal_keep_size = '16MB'")
    await source.query('ALTER SYSTEM SET wal_keep_size = 0')
    await source.query('SELECT pg_reload_conf()')
    await source.ensureCollection({
      name: 'items',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'label', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await source.query('CREATE TABLE filler (id serial PRIMARY KEY, pad text)')
    await source.upsertMany(
      'items',
      [1, 2, 3].map((id) => ({ id, label: `i${id}` })),
    )
    const lost: string[] = []
    const runner = new RuleRunner(
      { name: 'lossy', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
      source,
      target,
      { captureLost: ({ reason }) => lost.push(reason) },
    )
    await runner.sync()
    // changes the slot holds and nobody reads, then far more WAL than it may keep
    await source.upsertMany('items', [{ id: 4, label: 'while unread' }])
    await source.delete('items', { id: 2 })
    for (let round = 0; round < 20; round++) {
      await source.query("INSERT INTO filler (pad) SELECT repeat('x', 1000) FROM generate_series(1, 20000)")
      await source.query('SELECT pg_switch_wal()')
      await source.query('CHECKPOINT')
      const [slot] = await source.query<{ status: string }>(
        "SELECT wal_status AS status FROM pg_replication_slots WHERE slot_name LIKE '%lossy%'",
      )
      if (slot?.status === 'lost') break
    }
    expect((await source.capture!.backlog('lossy'))?.walStatus).toBe('lost')

    const stats = await runner.sync()
    expect(lost).toHaveLength(1)
    expect(lost[0]).toMatch(/invalidated/)
    expect(stats.reseeds).toBe(1)
    const rowsOf = async (dialect: Dialect): Promise<Row[]> => dialect.find('items', {}, { sort: { id: 1 } })
    expect(await rowsOf(target)).toEqual(await rowsOf(source))
    expect((await rowsOf(target)).map((row) => row.id)).toEqual([1, 3, 4])
    // and it streams again from the new capture
    await source.upsertMany('items', [{ id: 5, label: 'after' }])
    await runner.sync()
    expect(await rowsOf(target)).toEqual(await rowsOf(source))
    await runner.teardown()
  })
})

describe.skipIf(!mariadb.available)(`MariaDB binary logs purged while a rule was stopped${mariadb.skipNote}`, () => {
  let server: RunningMariaDB | undefined
  const dialects: Dialect[] = []
  const file = sqliteFile('lost-binlog.db')
  afterAll(async () => {
    for (const dialect of dialects) await dialect.close().catch(() => undefined)
    await server?.stop()
    file.cleanup()
  })

  it('the restarted rule recreates its capture and re-seeds the target instead of failing for good', async () => {
    server = await startMariaDB()
    const uri = (await createMariaDBDatabase(server.url, 'shop')).replace(/^mysql:/, 'mariadb:')
    const connect = async (dialect: string, at: string) => {
      const connected = await connectDialect({ dialect, uri: at })
      dialects.push(connected)
      return connected
    }
    const source = await connect('mariadb', uri)
    const target = await connect('sqlite', file.uri)
    const admin = await connect('mariadb', uri.replace(/\/shop$/, '/mysql'))
    await source.ensureCollection({
      name: 'items',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'label', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await source.upsertMany(
      'items',
      [1, 2, 3].map((id) => ({ id, label: `i${id}` })),
    )
    const rule = { name: 'stopped', source: 'a', target: 'b', mode: 'cdc' as const, collections: ['items'] }
    const lease = { owner: 'the rule worker' } // the same worker, restarted
    await new RuleRunner(rule, source, target, {}, lease).sync()
    // the worker is down; the source goes on, and its binary logs are purged (expire_logs_days)
    await source.upsertMany('items', [{ id: 4, label: 'while down' }])
    await source.delete('items', { id: 2 })
    await admin.query('FLUSH BINARY LOGS')
    const [status] = await admin.query<{ File: string }>('SHOW MASTER STATUS')
    for (let attempt = 0; attempt < 100; attempt++) {
      // a log is kept until the engine's checkpoint of it (shortly after the flush)
      await admin.query(`PURGE BINARY LOGS TO '${status!.File}'`)
      if ((await admin.query('SHOW BINARY LOGS')).length === 1) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(await admin.query('SHOW BINARY LOGS')).toHaveLength(1)

    const lost: string[] = []
    const restarted = new RuleRunner(
      rule,
      await connect('mariadb', uri),
      target,
      { captureLost: ({ reason }) => lost.push(reason) },
      lease,
    )
    const stats = await restarted.sync()
    expect(lost).toHaveLength(1)
    expect(lost[0]).toMatch(/purged/)
    expect(stats.reseeds).toBe(1)
    const rowsOf = async (dialect: Dialect): Promise<Row[]> => dialect.find('items', {}, { sort: { id: 1 } })
    expect((await rowsOf(target)).map((row) => row.id)).toEqual([1, 3, 4])
    await source.upsertMany('items', [{ id: 5, label: 'after' }])
    await restarted.sync()
    expect(await rowsOf(target)).toEqual(await rowsOf(source))
    await restarted.teardown()
  })
})

describe.skipIf(!available)(`a PostgreSQL source server restarted under a rule${skipNote}`, () => {
  let server: RunningPostgres | undefined
  const dialects: Dialect[] = []
  const file = sqliteFile('restarted-source.db')
  afterAll(async () => {
    for (const dialect of dialects) await dialect.close().catch(() => undefined)
    await server?.stop()
    file.cleanup()
  })

  it('syncs fail while it is down, then the rule goes on from its slot: nothing lost, nothing doubled', async () => {
    server = await startPostgres()
    const source = await connectDialect({ dialect: 'postgres', uri: await server.createDatabase('shop') })
    const target = await connectDialect({ dialect: 'sqlite', uri: file.uri })
    dialects.push(source, target)
    await source.ensureCollection({
      name: 'ledger',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'amount', type: 'integer' },
      ],
      primaryKey: ['id'],
    })
    const runner = new RuleRunner(
      { name: 'restarted', source: 'a', target: 'b', mode: 'cdc', collections: ['ledger'] },
      source,
      target,
    )
    await source.upsertMany('ledger', [{ id: 1, amount: 1 }])
    await runner.sync()
    await source.upsertMany('ledger', [{ id: 2, amount: 2 }]) // captured, not yet read
    await source.update('ledger', { id: 1 }, { $inc: { amount: 10 } })
    await server.halt!()
    await expect(runner.sync()).rejects.toThrow()
    await server.resume!()
    await source.update('ledger', { id: 1 }, { $inc: { amount: 100 } }).catch(async () => {
      // the pool's first use after the restart may meet a connection the server closed
      await source.update('ledger', { id: 1 }, { $inc: { amount: 100 } })
    })
    await source.upsertMany('ledger', [{ id: 3, amount: 3 }])
    let stats = await runner.sync().catch(() => null)
    for (let attempt = 0; !stats && attempt < 20; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 250)) // as the streaming loop's backoff would
      stats = await runner.sync().catch(() => null)
    }
    expect(stats).not.toBeNull()
    const rowsOf = async (dialect: Dialect): Promise<Row[]> => dialect.find('ledger', {}, { sort: { id: 1 } })
    expect(await rowsOf(target)).toEqual([
      { id: 1, amount: 111 },
      { id: 2, amount: 2 },
      { id: 3, amount: 3 },
    ])
    expect(await rowsOf(target)).toEqual(await rowsOf(source))
    await runner.teardown()
  })
})

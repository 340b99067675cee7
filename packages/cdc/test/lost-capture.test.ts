import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, type Dialect, type Row } from '@mostajs/replicator-core'
import { RuleRunner } from '@mostajs/replicator-cdc'
import { sqliteFile, startPostgres, type RunningPostgres } from '@mostajs/replicator-testkit'
import { privateServer } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('postgres')

// A slot that held more WAL than max_slot_wal_keep_size is invalidated by PostgreSQL: the
// changes it held are gone. The rule must say so and re-seed by itself, never read on as if
// nothing had happened, nor fail for good.

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

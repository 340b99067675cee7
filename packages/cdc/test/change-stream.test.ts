import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, type ChangeEvent, type ChangeStream, type Dialect } from '@mostajs/replicator-core'
import { openChangeStream } from '@mostajs/replicator-cdc'
import { expectReplicatorError, testBackends } from '@mostajs/replicator-testkit/vitest'

const backends = testBackends()
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

/** Takes `count` events from a stream, then leaves its loop (the batch in hand stays unconfirmed). */
async function take(stream: ChangeStream, count: number): Promise<ChangeEvent[]> {
  const events: ChangeEvent[] = []
  for await (const event of stream) {
    events.push(event)
    if (events.length === count) break
  }
  return events
}

const summary = (events: ChangeEvent[]) => events.map((event) => `${event.op}:${JSON.stringify(event.key)}`)

describe('openChangeStream: captured changes as an async iterable, at least once', () => {
  for (const backend of [backends.postgres, backends.mariadb, backends.sqlite]) {
    it.skipIf(!backend.serverUrl)(
      `${backend.kind}: in commit order; a batch is confirmed only once the loop went past it${backend.serverUrl ? '' : ` (skipped: ${backend.skipReason})`}`,
      async () => {
        const database = await backend.freshDatabase()
        const connect = () => connectDialect({ dialect: backend.kind, uri: database.uri })
        const source: Dialect = await connect()
        cleanups.push(async () => {
          await source.close()
          await database.cleanup()
        })
        expect(source.capture).toBeDefined()
        await source.ensureCollection({
          name: 'orders',
          columns: [
            { name: 'id', type: 'integer' },
            { name: 'total', type: 'integer' },
          ],
          primaryKey: ['id'],
        })
        const options = { name: `audit_${backend.kind}`, collections: ['orders'], pollMs: 20 }
        let stream = await openChangeStream(source, options)
        await source.upsertMany('orders', [
          { id: 1, total: 10 },
          { id: 2, total: 20 },
        ])
        await source.update('orders', { id: 1 }, { total: 11 })
        await source.delete('orders', { id: 2 })
        const first = await take(stream, 4)
        expect(summary(first)).toEqual(['c:1', 'c:2', 'u:1', 'd:2'])
        expect(first[2]!.after).toEqual({ id: 1, total: 11 })
        await stream.close()

        // the consumer left inside the batch: the next stream gets it again
        stream = await openChangeStream(source, options)
        expect(summary(await take(stream, 4))).toEqual(['c:1', 'c:2', 'u:1', 'd:2'])
        await stream.close()

        // this time the loop goes past the batch (it waits for the next change): confirmed
        stream = await openChangeStream(source, options)
        const consumer = take(stream, 5)
        await new Promise((resolve) => setTimeout(resolve, 300))
        await source.insert('orders', { id: 3, total: 30 })
        expect(summary(await consumer)).toEqual(['c:1', 'c:2', 'u:1', 'd:2', 'c:3'])
        await stream.close()

        stream = await openChangeStream(source, { ...options, dropOnClose: true })
        expect(summary(await take(stream, 1))).toEqual(['c:3']) // only what was not confirmed
        expect(() => stream[Symbol.asyncIterator]()).toThrow(/already being iterated/)
        await stream.close()
      },
      60_000,
    )
  }

  it.skipIf(!backends.postgres.serverUrl)(
    'postgres: a transaction spilled to disk comes whole, in order, with plain after-images',
    async () => {
      const database = await backends.postgres.freshDatabase()
      const source = await connectDialect({
        dialect: 'postgres',
        uri: database.uri,
        capture: { spillAfterChanges: 20 },
      })
      cleanups.push(async () => {
        await source.close()
        await database.cleanup()
      })
      await source.ensureCollection({
        name: 'lines',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'n', type: 'integer' },
        ],
        primaryKey: ['id'],
      })
      const stream = await openChangeStream(source, {
        name: 'spilled',
        collections: ['lines'],
        pollMs: 20,
        dropOnClose: true,
      })
      try {
        await source.upsertMany(
          'lines',
          Array.from({ length: 100 }, (_, index) => ({ id: index + 1, n: index * 2 })),
        ) // one transaction
        await source.insert('lines', { id: 101, n: 0 })
        const events = await take(stream, 101)
        expect(events.map((event) => event.key)).toEqual(Array.from({ length: 101 }, (_, index) => index + 1))
        expect(events[99]).toMatchObject({ op: 'c', after: { id: 100, n: 198 } })
        expect({ ...events[99] }.after).toEqual({ id: 100, n: 198 }) // plain objects: a spread keeps after
        expect(new Set(events.slice(0, 100).map((event) => event.txId)).size).toBe(1)
      } finally {
        await stream.close()
      }
    },
  )

  it('refuses a bad name or no collections before touching the source', async () => {
    const database = await backends.sqlite.freshDatabase()
    const source = await connectDialect({ dialect: 'sqlite', uri: database.uri })
    try {
      await expectReplicatorError(
        openChangeStream(source, { name: 'bad name; drop', collections: ['x'] }),
        'CONFIG_INVALID',
      )
      await expectReplicatorError(openChangeStream(source, { name: 'ok', collections: [] }), 'CONFIG_INVALID')
      expect(await source.listCollections()).toEqual([])
    } finally {
      await source.close()
      await database.cleanup()
    }
  })
})

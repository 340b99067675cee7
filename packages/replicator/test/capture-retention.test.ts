import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type RetentionWarning } from '@mostajs/replicator'
import { createReplicatorMetrics, healthOf } from '@mostajs/replicator/service'
import { testBackends, waitFor } from '@mostajs/replicator-testkit/vitest'

// A capture whose rule does not run keeps WAL on its PostgreSQL source without bound: past
// maxRetainedWalBytes it is reported (event, /health warning, metric), and no longer once the
// rule caught up.

const backends = testBackends()
const MB = 1024 * 1024

describe.skipIf(!backends.postgres.serverUrl)('capture retention guard', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
  })

  it('a capture holding more WAL than maxRetainedWalBytes is reported once, and cleared when its rule catches up', async () => {
    const sourceDb = await backends.postgres.freshDatabase()
    const targetDb = await backends.sqlite.freshDatabase()
    cleanups.push(sourceDb.cleanup, targetDb.cleanup)
    const rm = new ReplicationManager(null, { maxRetainedWalBytes: 2 * MB, retentionCheckIntervalMs: 60_000 })
    cleanups.unshift(() => rm.disconnectAll())
    await rm.addReplica('shop', { name: 'main', role: 'master', dialect: 'postgres', uri: sourceDb.uri })
    await rm.addReplica('copy', { name: 'main', role: 'master', dialect: 'sqlite', uri: targetDb.uri })
    const source = rm.resolveWriteService('shop').dialect
    await source.ensureCollection({
      name: 'docs',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'body', type: 'text' },
      ],
      primaryKey: ['id'],
    })
    await rm.addReplicationRule({ name: 'kept', source: 'shop', target: 'copy', mode: 'cdc', collections: ['docs'] })
    // caught up: the slot holds no more than what the server's other databases wrote since (the
    // server is shared with the other tests; its restart point moves at the next checkpoint)
    await waitFor(
      async () => {
        await rm.sync('kept')
        await source.query('CHECKPOINT')
        return (await rm.checkCaptureRetention()).length === 0
      },
      20_000,
      'the caught-up capture under the limit',
    )
    const events: RetentionWarning[] = []
    rm.on('capture.retention', (warning) => events.push(warning))

    // the rule stops running while its table takes about 8 MB of writes
    await source.query('INSERT INTO docs (id, body) SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 8000) g')
    const [warning] = await rm.checkCaptureRetention()
    expect(warning).toMatchObject({ capture: 'kept', source: 'shop/main' })
    expect(warning!.retainedBytes!).toBeGreaterThan(2 * MB)
    expect(warning!.reason).toMatch(/limit 2\.0 MB/)
    expect(events).toHaveLength(1)
    await rm.checkCaptureRetention()
    expect(events).toHaveLength(1) // reported when it starts, not at every check
    expect(healthOf(rm).warnings.some((text) => text.startsWith('capture kept on shop/main: holds'))).toBe(true)
    expect(healthOf(rm).status).toBe('ok') // a warning: nothing is lost yet
    const metrics = await createReplicatorMetrics(rm).text()
    expect(metrics).toMatch(/replicator_capture_retention_exceeded\{capture="kept",source="shop\/main"\} 1/)

    await waitFor(
      async () => {
        // the slot moves its restart point once the server logged a point past what was confirmed
        await rm.sync('kept')
        await source.query('CHECKPOINT')
        return (await rm.checkCaptureRetention()).length === 0
      },
      15_000,
      'the slot released its WAL',
    )
    expect(healthOf(rm).warnings.filter((text) => text.startsWith('capture'))).toEqual([])
  })
})

import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager, type Dialect } from '@mostajs/replicator'
import {
  createMariaDBDatabase,
  sqliteFile,
  startMariaDB,
  startMariaDBReplica,
  type RunningMariaDB,
} from '@mostajs/replicator-testkit'
import { privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('mariadb')

// A CDC rule reading a MariaDB master follows a promotion: its capture resumes from the new
// master's own binary log, not from a GTID of the old master's log (the capture's bookkeeping
// row reached the replica by replication), which the new master's log need not hold.

describe.skipIf(!available)(`a MariaDB source promoted under a CDC rule${skipNote}`, () => {
  const servers: RunningMariaDB[] = []
  const dialects: Dialect[] = []
  const file = sqliteFile('mariadb-promotion-target.db')
  const manager = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
  manager.on('error', () => undefined)
  afterAll(async () => {
    await manager.disconnectAll()
    for (const dialect of dialects) await dialect.close().catch(() => undefined)
    for (const server of servers.reverse()) await server.stop()
    file.cleanup()
  })

  it('after the promotion the rule captures from the new master, even when its log no longer holds the old GTIDs', async () => {
    const master = await startMariaDB()
    servers.push(master)
    const masterUri = (await createMariaDBDatabase(master.url, 'shop')).replace(/^mysql:/, 'mariadb:')
    const replica = await startMariaDBReplica(master)
    servers.push(replica)
    const replicaUrl = new URL(masterUri)
    replicaUrl.port = String(replica.port)
    const replicaAdmin = await connectDialect({
      dialect: 'mariadb',
      uri: replicaUrl.toString().replace(/\/shop$/, '/mysql'),
    })
    dialects.push(replicaAdmin)

    await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'mariadb', uri: masterUri })
    const writes = () => manager.resolveWriteService('shop').dialect
    await writes().ensureCollection({
      name: 'orders',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'qty', type: 'integer' },
      ],
      primaryKey: ['id'],
    })
    await waitFor(
      async () =>
        (
          await replicaAdmin.query<{ n: number }>(
            "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'orders'",
          )
        )[0]!.n > 0,
      15_000,
      'table replicated',
    )
    await manager.addReplica('shop', {
      name: 'standby',
      role: 'slave',
      dialect: 'mariadb',
      uri: replicaUrl.toString(),
      lagTolerance: 2000,
    })
    await manager.addReplica('analytics', { name: 'main', role: 'master', dialect: 'sqlite', uri: file.uri })
    await manager.addReplicationRule({
      name: 'orders-out',
      source: 'shop',
      target: 'analytics',
      mode: 'cdc',
      collections: ['orders'],
    })
    await writes().upsertMany(
      'orders',
      [1, 2, 3].map((id) => ({ id, qty: id })),
    )
    await manager.sync('orders-out')
    const target = manager.resolveWriteService('analytics').dialect
    expect(await target.count('orders')).toBe(3)
    await waitFor(
      () => manager.getReplicaStatus('shop').find((entry) => entry.name === 'standby')!.status === 'healthy',
      15_000,
      'standby healthy',
    )
    // the standby keeps its binary log a short time (expire_logs_days): the old GTIDs are gone
    await replicaAdmin.query('FLUSH BINARY LOGS')
    const [status] = await replicaAdmin.query<{ File: string }>('SHOW MASTER STATUS')
    await waitFor(
      async () => {
        // a log is kept until the engine's checkpoint of it (shortly after the flush)
        await replicaAdmin.query(`PURGE BINARY LOGS TO '${status!.File}'`)
        return (await replicaAdmin.query('SHOW BINARY LOGS')).length === 1
      },
      15_000,
      'old binary logs purged on the standby',
    )
    await manager.promoteToMaster('shop', 'standby')
    await writes().upsertMany('orders', [
      { id: 1, qty: 100 },
      { id: 4, qty: 4 },
    ])
    await writes().delete('orders', { id: 2 })
    await manager.sync('orders-out')
    await writes().upsertMany('orders', [{ id: 5, qty: 5 }])
    await manager.sync('orders-out')
    const rows = await target.find('orders', {}, { sort: { id: 1 } })
    expect(rows).toEqual(await writes().find('orders', {}, { sort: { id: 1 } }))
    expect(rows.map((row) => row.id)).toEqual([1, 3, 4, 5])
  })
})

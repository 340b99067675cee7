import '@mostajs/replicator-dialect-mysql'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager, type Dialect, type EntityService } from '@mostajs/replicator'
import {
  createMariaDBDatabase,
  startMariaDB,
  startMariaDBReplica,
  type RunningMariaDB,
} from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('mariadb')

describe.skipIf(!available)(`ReplicationManager on a real MariaDB master with 2 native replicas${skipNote}`, () => {
  let master: RunningMariaDB
  const replicas: RunningMariaDB[] = []
  let masterUri = ''
  const replicaUris: string[] = []
  const admin: Dialect[] = []
  let manager: ReplicationManager
  const portOf = (service: EntityService) => Number(new URL(service.dialect.maskedUri).port)
  const status = (name: string) => manager.getReplicaStatus('orders').find((replica) => replica.name === name)!

  beforeAll(async () => {
    master = await startMariaDB()
    masterUri = (await createMariaDBDatabase(master.url, 'orders')).replace(/^mysql:/, 'mariadb:')
    for (let i = 0; i < 2; i++) {
      const replica = await startMariaDBReplica(master)
      replicas.push(replica)
      const uri = new URL(masterUri)
      uri.port = String(replica.port)
      replicaUris.push(uri.toString())
    }
    for (const uri of replicaUris)
      admin.push(await connectDialect({ dialect: 'mariadb', uri: uri.replace(/\/orders$/, '/mysql') }))
    manager = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    await manager.addReplica('orders', { name: 'primary', role: 'master', dialect: 'mariadb', uri: masterUri })
    await waitFor(
      async () =>
        (
          await admin[0]!.query<{ n: number }>(
            "SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'orders'",
          )
        )[0]!.n > 0,
      15_000,
      'database replicated',
    )
    await waitFor(
      async () =>
        (
          await admin[1]!.query<{ n: number }>(
            "SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'orders'",
          )
        )[0]!.n > 0,
      15_000,
      'database replicated',
    )
    for (let i = 0; i < 2; i++)
      await manager.addReplica('orders', {
        name: `r${i + 1}`,
        role: 'slave',
        dialect: 'mariadb',
        uri: replicaUris[i]!,
        lagTolerance: 500,
      })
    await manager.resolveWriteService('orders').dialect.ensureCollection({
      name: 'orders',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'total', type: 'decimal' },
      ],
      primaryKey: ['id'],
    })
  })

  afterAll(async () => {
    await manager?.disconnectAll()
    for (const dialect of admin) await dialect.close().catch(() => undefined)
    for (const replica of replicas) await replica.stop()
    await master?.stop()
  })

  it('measures the replicas by heartbeat, with the native Seconds_Behind_Master beside it', async () => {
    await waitFor(
      () => manager.getReplicaStatus('orders').every((replica) => replica.status === 'healthy'),
      15_000,
      'healthy replicas',
    )
    await waitFor(
      () => status('r1').native?.role === 'replica' && status('r1').native?.applying === true,
      5000,
      'native status',
    )
    expect(status('r1').lag!).toBeLessThanOrEqual(500)
    expect(status('r1').native!.lagMs).not.toBeUndefined()
  })

  it('a replica whose SQL thread stops shows growing lag and leaves routing until it resumes', async () => {
    await admin[0]!.query('STOP SLAVE SQL_THREAD')
    await waitFor(() => status('r1').status === 'lagging', 10_000, 'r1 lagging')
    const first = status('r1').lag!
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(status('r1').lag!).toBeGreaterThan(first)
    await waitFor(() => status('r1').native?.applying === false, 5000, 'native stopped flag')
    for (let i = 0; i < 100; i++) expect(portOf(manager.resolveReadService('orders'))).toBe(replicas[1]!.port)
    await admin[0]!.query('START SLAVE SQL_THREAD')
    await waitFor(() => status('r1').status === 'healthy', 10_000, 'r1 healthy again')
  })

  it('promotes a replica: replication stopped and cleared, read_only=0, old master read-only, the other replica re-pointed', async () => {
    const before = manager.resolveWriteService('orders')
    await before.create('orders', { id: 1, total: '10.5' })
    const result = await manager.promoteToMaster('orders', 'r2')
    expect(result).toMatchObject({
      promoted: 'r2',
      previousMaster: 'primary',
      previousMasterReadOnly: true,
      possibleDataLoss: null,
      repointed: ['r1'],
    })
    const writes = manager.resolveWriteService('orders')
    expect(portOf(writes)).toBe(replicas[1]!.port)
    expect((await writes.findById('orders', 1))?.total).toBe('10.5')
    await writes.create('orders', { id: 2, total: '20' })
    await expectReplicatorError(before.create('orders', { id: 3, total: '0' }), 'FENCED')
    expect(await admin[1]!.query('SHOW SLAVE STATUS')).toEqual([])
    expect(Number((await admin[1]!.query<{ ro: number }>('SELECT @@global.read_only AS ro'))[0]!.ro)).toBe(0)
    const oldMaster = await connectDialect({ dialect: 'mariadb', uri: masterUri })
    expect(Number((await oldMaster.query<{ ro: number }>('SELECT @@global.read_only AS ro'))[0]!.ro)).toBe(1)
    await oldMaster.close()
    const r1 = await connectDialect({ dialect: 'mariadb', uri: replicaUris[0]! })
    await waitFor(
      async () => (await r1.findOne('orders', { id: 2 }))?.total === '20',
      15_000,
      'r1 follows the new master',
    )
    await r1.close()
    await waitFor(() => status('r1').status === 'healthy', 15_000, 'r1 healthy under the new master')
  })
})

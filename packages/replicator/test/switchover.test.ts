import '@mostajs/replicator-dialect-mysql'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ReplicationManager } from '@mostajs/replicator'
import {
  createMariaDBDatabase,
  startMariaDB,
  startMariaDBReplica,
  type RunningMariaDB,
} from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

// A planned switchover loses nothing, and on MariaDB the old master follows the new one as a
// replica: the switch can be made back.

const { available, skipNote } = privateServer('mariadb')

describe.skipIf(!available)(`switchover on MariaDB${skipNote}`, () => {
  let master: RunningMariaDB
  let replica: RunningMariaDB
  let masterUri = ''
  let replicaUri = ''
  const manager = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
  manager.on('error', () => undefined)
  const status = (name: string) => manager.getReplicaStatus('orders').find((entry) => entry.name === name)!

  beforeAll(async () => {
    master = await startMariaDB()
    masterUri = (await createMariaDBDatabase(master.url, 'shop')).replace(/^mysql:/, 'mariadb:')
    replica = await startMariaDBReplica(master)
    const url = new URL(masterUri)
    url.port = String(replica.port)
    replicaUri = url.toString()
  })

  afterAll(async () => {
    await manager.disconnectAll()
    await replica?.stop()
    await master?.stop()
  })

  it('switches to the replica and back, every write kept; the old master replicates from the new one', async () => {
    await manager.addReplica('orders', { name: 'primary', role: 'master', dialect: 'mariadb', uri: masterUri })
    await manager.addReplica('orders', {
      name: 'r1',
      role: 'slave',
      dialect: 'mariadb',
      uri: replicaUri,
      lagTolerance: 1000,
    })
    await manager.resolveWriteService('orders').dialect.ensureCollection({
      name: 'orders',
      columns: [{ name: 'id', type: 'integer' }],
      primaryKey: ['id'],
    })
    await waitFor(() => status('r1').status === 'healthy', 15_000, 'r1 healthy')
    const before = manager.resolveWriteService('orders')
    for (let id = 1; id <= 50; id++) await before.create('orders', { id })

    const there = await manager.switchover('orders', 'r1')
    expect(there).toMatchObject({ promoted: 'r1', previousMaster: 'primary', possibleDataLoss: null })
    await expectReplicatorError(before.create('orders', { id: 999 }), 'FENCED')
    const onR1 = manager.resolveWriteService('orders')
    expect(onR1.dialect.maskedUri).toContain(`:${replica.port}/`)
    expect(await onR1.dialect.count('orders')).toBe(50)
    for (let id = 51; id <= 60; id++) await onR1.create('orders', { id })
    // the old master is a replica of r1 now: it receives the new writes and turns healthy
    expect(status('primary')).toMatchObject({ role: 'slave' })
    await waitFor(() => status('primary').status === 'healthy', 15_000, 'the old master follows r1')

    const back = await manager.switchover('orders', 'primary')
    expect(back).toMatchObject({ promoted: 'primary', previousMaster: 'r1', possibleDataLoss: null })
    const onPrimary = manager.resolveWriteService('orders')
    expect(onPrimary.dialect.maskedUri).toContain(`:${master.port}/`)
    expect(await onPrimary.dialect.count('orders')).toBe(60)
    await onPrimary.create('orders', { id: 61 })
    await waitFor(() => status('r1').status === 'healthy', 15_000, 'r1 follows the primary again')
  })

  it('refuses a switchover when the master cannot be reached (a failover is promoteToMaster)', async () => {
    await master.kill!()
    await waitFor(() => status('primary').status === 'unhealthy', 15_000, 'the master is down')
    await expectReplicatorError(manager.switchover('orders', 'r1'), 'CONNECTION_FAILED')
  })
})

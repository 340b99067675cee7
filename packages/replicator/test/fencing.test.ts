import '@mostajs/replicator-dialect-postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager, type Dialect } from '@mostajs/replicator'
import { startPostgres, startPostgresStandby, type RunningPostgres } from '@mostajs/replicator-testkit'
import { privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

// Fencing an old master stops its open transactions: it turns read-only first, then ends the
// other sessions, and only then writes the final heartbeat the candidate must reach. A
// transaction open during the promotion cannot commit on the old master afterwards.

const { available, skipNote } = privateServer('postgres')

describe.skipIf(!available)(`fencing an old PostgreSQL master${skipNote}`, () => {
  let master: RunningPostgres
  let standby: RunningPostgres
  let masterUri = ''
  let standbyUri = ''
  const dialects: Dialect[] = []
  const manager = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
  manager.on('error', () => undefined)

  beforeAll(async () => {
    master = await startPostgres()
    masterUri = await master.createDatabase('shop')
    const setup = await connectDialect({ dialect: 'postgres', uri: masterUri })
    await setup.ensureCollection({
      name: 'orders',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'total', type: 'integer' },
      ],
      primaryKey: ['id'],
    })
    await setup.close()
    standby = await startPostgresStandby(master)
    const url = new URL(masterUri)
    url.port = String(standby.port)
    standbyUri = url.toString()
  })

  afterAll(async () => {
    await manager.disconnectAll()
    for (const dialect of dialects) await dialect.close().catch(() => undefined)
    await standby?.stop()
    await master?.stop()
  })

  it('a transaction open on the old master during the promotion cannot commit there afterwards', async () => {
    await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
    await manager.addReplica('shop', {
      name: 'standby',
      role: 'slave',
      dialect: 'postgres',
      uri: standbyUri,
      lagTolerance: 2000,
    })
    await waitFor(
      () => manager.getReplicaStatus('shop').find((replica) => replica.name === 'standby')!.status === 'healthy',
      15_000,
      'standby healthy',
    )
    // an application session of its own, with a transaction left open across the promotion
    const application = await connectDialect({ dialect: 'postgres', uri: masterUri, pool: { max: 1 } })
    dialects.push(application)
    let finish!: () => void
    const finishing = new Promise<void>((resolve) => (finish = resolve))
    let inserted!: () => void
    const insertedOnce = new Promise<void>((resolve) => (inserted = resolve))
    const open = application.transaction(async (tx) => {
      await tx.insert('orders', { id: 1, total: 100 })
      inserted()
      await finishing
      await tx.insert('orders', { id: 2, total: 200 })
    })
    open.catch(() => undefined)
    await insertedOnce

    const result = await manager.promoteToMaster('shop', 'standby')
    expect(result).toMatchObject({ previousMasterReadOnly: true, possibleDataLoss: null })
    finish()
    await expect(open).rejects.toThrow()

    const oldMaster = await connectDialect({ dialect: 'postgres', uri: masterUri })
    dialects.push(oldMaster)
    expect(await oldMaster.count('orders')).toBe(0) // the open transaction never committed there
    await expect(oldMaster.insert('orders', { id: 3, total: 300 })).rejects.toThrow(/read-only/)
    expect(await manager.resolveWriteService('shop').dialect.count('orders')).toBe(0)
  })
})

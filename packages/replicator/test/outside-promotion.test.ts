import '@mostajs/replicator-dialect-postgres'
import { afterEach, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager } from '@mostajs/replicator'
import { createReplicatorMetrics } from '@mostajs/replicator/service'
import { startPostgres, startPostgresStandby, type RunningPostgres } from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

// Follow mode: a change of master made outside the manager (Patroni, a managed database's
// failover, an operator's pg_promote) is followed, not fought; two writable primaries are
// reported, never chosen between.

const { available, skipNote } = privateServer('postgres')

describe.skipIf(!available)(`a standby promoted outside the manager${skipNote}`, () => {
  const servers: RunningPostgres[] = []
  const managers: ReplicationManager[] = []
  afterEach(async () => {
    for (const manager of managers.splice(0)) await manager.disconnectAll()
    for (const server of servers.splice(0).reverse()) await server.stop()
  })

  /** A master with one standby, a manager on both, and a direct connection to each (the outside). */
  async function pair() {
    const master = await startPostgres()
    servers.push(master)
    const masterUri = await master.createDatabase('shop')
    const standby = await startPostgresStandby(master)
    servers.push(standby)
    const url = new URL(masterUri)
    url.port = String(standby.port)
    const standbyUri = url.toString()
    const manager = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    managers.push(manager)
    const errors: Error[] = []
    manager.on('error', (error) => errors.push(error as Error))
    const followed: Array<{ master: string; outside?: boolean }> = []
    manager.on('topology.followed', (info) => followed.push(info))
    await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
    await manager.addReplica('shop', { name: 's1', role: 'slave', dialect: 'postgres', uri: standbyUri })
    await manager.resolveWriteService('shop').dialect.ensureCollection({
      name: 'orders',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'by', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    const outsideMaster = await connectDialect({ dialect: 'postgres', uri: masterUri })
    const outsideStandby = await connectDialect({ dialect: 'postgres', uri: standbyUri })
    const closeOutside = async () => {
      await outsideMaster.close()
      await outsideStandby.close()
    }
    return { manager, standby, errors, followed, outsideMaster, outsideStandby, closeOutside }
  }

  it('while the master turned read-only: the standby becomes the master here, writes go to it', async () => {
    const { manager, standby, followed, outsideMaster, outsideStandby, closeOutside } = await pair()
    const metrics = createReplicatorMetrics(manager)
    const before = manager.resolveWriteService('shop')
    await before.create('orders', { id: 1, by: 'before' })
    // the standby has it before the outside failover (asynchronous replication: a real one could lose it)
    await waitFor(async () => (await outsideStandby.count('orders')) === 1, 10_000, 'row 1 on the standby')
    // the outside failover: the old master refuses writes, the standby is promoted
    await outsideMaster.query('ALTER SYSTEM SET default_transaction_read_only = on')
    await outsideMaster.query('SELECT pg_reload_conf()')
    await outsideStandby.query('SELECT pg_promote()')
    await waitFor(() => followed.length > 0, 10_000, 'the manager follows the outside promotion')
    expect(followed).toEqual([expect.objectContaining({ master: 's1', outside: true })])
    const writer = manager.resolveWriteService('shop')
    await writer.create('orders', { id: 2, by: 'after' })
    expect(writer.dialect.maskedUri).toContain(`:${standby.port}/`)
    expect(
      (await outsideStandby.query<{ id: number }>('SELECT id FROM orders ORDER BY id')).map((row) => row.id),
    ).toEqual([1, 2])
    await expectReplicatorError(before.create('orders', { id: 3, by: 'stale service' }), 'FENCED')
    expect(manager.getEpoch('shop')).toBe(1)
    const text = await metrics.text()
    expect(text).toContain('replicator_master_changes_followed_total{project="shop",by="outside"} 1')
    expect(text).toContain('replicator_topology_epoch{project="shop"} 1')
    expect(text).not.toMatch(/^replicator_promotions_total\{/m) // none made here
    metrics.detach()
    await closeOutside()
  })

  it('while the master is still writable: reported once, not followed, until the master is read-only', async () => {
    const { manager, standby, errors, followed, outsideMaster, outsideStandby, closeOutside } = await pair()
    await outsideStandby.query('SELECT pg_promote()')
    await waitFor(
      () => errors.some((error) => /writable primary while the master is one too/.test(error.message)),
      10_000,
      'two writable primaries reported',
    )
    await new Promise((resolve) => setTimeout(resolve, 600)) // a few more health checks
    expect(followed).toEqual([])
    expect(errors.filter((error) => /writable primary/.test(error.message))).toHaveLength(1)
    expect(manager.resolveWriteService('shop').dialect.maskedUri).not.toContain(`:${standby.port}/`)
    // the outside finishes its failover: the old master is made read-only, the manager follows
    await outsideMaster.query('ALTER SYSTEM SET default_transaction_read_only = on')
    await outsideMaster.query('SELECT pg_reload_conf()')
    await waitFor(() => followed.length > 0, 10_000, 'followed once the old master is read-only')
    expect(manager.resolveWriteService('shop').dialect.maskedUri).toContain(`:${standby.port}/`)
    await closeOutside()
  })
})

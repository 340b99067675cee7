import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager, type PromotionResult } from '@mostajs/replicator'
import { createReplicatorMetrics } from '@mostajs/replicator/service'
import { EtcdTopologyStore } from '@mostajs/replicator-store-etcd'
import {
  createMariaDBDatabase,
  etcdAvailable,
  startEtcdCluster,
  startMariaDB,
  startMariaDBReplica,
  startPostgres,
  startPostgresStandby,
  type RunningEtcd,
  type RunningMariaDB,
  type RunningPostgres,
} from '@mostajs/replicator-testkit'
import { privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'
import { failoverOptions } from './fixtures/failover-options.js'

// Automatic failover across several application instances sharing a topology in etcd: the
// master is SIGKILLed; the coordinator alone promotes the most caught-up standby, every
// instance writes to it within seconds, and no acknowledged write is lost.

const { available, skipNote } = privateServer('postgres')
const mariadb = privateServer('mariadb')

/**
 * Every instance writes `orders` rows in a loop (a write counts once its call returned:
 * acknowledged) while the master, listening on `oldPort`, is killed. Resolves once every
 * instance wrote to a new master, with how long after the kill each did.
 */
async function writeAcrossKill(
  managers: ReplicationManager[],
  project: string,
  oldPort: number,
  kill: () => Promise<void>,
): Promise<{ acknowledged: number[]; resumedMs: number[] }> {
  const acknowledged: number[] = []
  let nextId = 1
  let writing = true
  const resumedAt: Array<number | null> = managers.map(() => null)
  const writers = managers.map(async (manager, index) => {
    while (writing) {
      const id = nextId++
      try {
        const writer = manager.resolveWriteService(project)
        await writer.create('orders', { id, by: `m${index}` })
        acknowledged.push(id)
        if (resumedAt[index] === null && !writer.dialect.maskedUri.includes(`:${oldPort}/`))
          resumedAt[index] = Date.now()
      } catch {
        // the master is down, or the service was fenced: try again
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })
  await new Promise((resolve) => setTimeout(resolve, 500))
  const killedAt = Date.now()
  await kill()
  try {
    await waitFor(() => resumedAt.every((at) => at !== null), 20_000, 'every instance writes on the new master')
  } finally {
    writing = false
    await Promise.all(writers)
  }
  return { acknowledged, resumedMs: resumedAt.map((at) => at! - killedAt) }
}
const required = process.env.REPLICATOR_REQUIRE_BACKENDS === '1'

describe.skipIf(!available || (!etcdAvailable() && !required))(`automatic failover through etcd${skipNote}`, () => {
  let cluster: RunningEtcd
  let master: RunningPostgres
  const standbys: RunningPostgres[] = []
  let masterUri = ''
  const standbyUris: string[] = []
  const managers: ReplicationManager[] = []
  const stores: EtcdTopologyStore[] = []

  beforeAll(async () => {
    expect(etcdAvailable(), 'etcd is needed (Debian: etcd-server)').toBe(true)
    cluster = await startEtcdCluster(3)
    master = await startPostgres()
    masterUri = await master.createDatabase('shop')
    for (let i = 0; i < 2; i++) {
      const standby = await startPostgresStandby(master)
      standbys.push(standby)
      const url = new URL(masterUri)
      url.port = String(standby.port)
      standbyUris.push(url.toString())
    }
    // synchronous replication to both standbys: an acknowledged commit is on whichever is promoted
    const admin = await connectDialect({ dialect: 'postgres', uri: masterUri })
    await admin.query("ALTER SYSTEM SET synchronous_standby_names = 'ANY 2 (*)'")
    await admin.query('SELECT pg_reload_conf()')
    await admin.close()
  })

  afterAll(async () => {
    for (const manager of managers) await manager.disconnectAll()
    for (const store of stores) await store.close()
    for (const standby of standbys) await standby.stop()
    await master?.stop()
    await cluster?.stop()
  })

  it('SIGKILL of the master: one promotion, every instance writes to the new master, acknowledged writes kept', async () => {
    const promotions: PromotionResult[] = []
    for (const name of ['a', 'b', 'c']) {
      const store = new EtcdTopologyStore({ endpoints: cluster.endpoints, prefix: '/failover-test' })
      stores.push(store)
      const manager = new ReplicationManager(null, failoverOptions(name, store, { coordinatorLeaseMs: 3000 }))
      manager.on('error', () => undefined)
      manager.on('failover.automatic', (result) => promotions.push(result))
      managers.push(manager)
      await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
      for (const [index, uri] of standbyUris.entries())
        await manager.addReplica('shop', {
          name: `s${index + 1}`,
          role: 'slave',
          dialect: 'postgres',
          uri,
          lagTolerance: 1000,
        })
    }
    await managers[0]!.resolveWriteService('shop').dialect.ensureCollection({
      name: 'orders',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'by', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await waitFor(
      () =>
        managers.every((manager) => manager.getReplicaStatus('shop').every((replica) => replica.status === 'healthy')),
      20_000,
      'every replica healthy in every instance',
    )

    const metrics = managers.map((manager) => createReplicatorMetrics(manager))
    // every instance writes; a write counts once its call returned (acknowledged)
    const { acknowledged, resumedMs } = await writeAcrossKill(managers, 'shop', master.port, () => master.kill!())
    console.log(
      `first write acknowledged by the new master after the SIGKILL, per instance: ${resumedMs.join(', ')} ms`,
    )
    expect(Math.max(...resumedMs)).toBeLessThan(5000)
    expect(promotions).toHaveLength(1) // the coordinator alone promoted
    // and the metrics say so: one automatic failover, followed by the two other instances
    await waitFor(
      async () => {
        const texts = await Promise.all(metrics.map((registry) => registry.text()))
        const count = (pattern: RegExp) => texts.filter((text) => pattern.test(text)).length
        return (
          count(/^replicator_automatic_failovers_total\{project="shop"\} 1$/m) === 1 &&
          count(/^replicator_master_changes_followed_total\{project="shop",by="store"\} 1$/m) === 2
        )
      },
      5000,
      'one automatic failover and two followers in the metrics',
    )
    for (const registry of metrics) registry.detach()
    const promoted = promotions[0]!.promoted
    for (const manager of managers) {
      const writer = manager.resolveWriteService('shop')
      expect(writer.dialect.maskedUri).toContain(`:${standbys[promoted === 's1' ? 0 : 1]!.port}/`)
    }
    // no acknowledged write is lost: each is on the new master
    const stored = new Set(
      (await managers[0]!.resolveWriteService('shop').dialect.find('orders')).map((row) => Number(row.id)),
    )
    expect(acknowledged.filter((id) => !stored.has(id))).toEqual([])
  })
})

describe.skipIf(!mariadb.available || (!etcdAvailable() && !required))(
  `automatic failover of MariaDB through etcd${mariadb.skipNote}`,
  () => {
    let cluster: RunningEtcd
    let master: RunningMariaDB
    let replica: RunningMariaDB
    let masterUri = ''
    let replicaUri = ''
    const managers: ReplicationManager[] = []
    const stores: EtcdTopologyStore[] = []

    beforeAll(async () => {
      expect(etcdAvailable(), 'etcd is needed (Debian: etcd-server)').toBe(true)
      cluster = await startEtcdCluster(3)
      master = await startMariaDB()
      masterUri = (await createMariaDBDatabase(master.url, 'shop')).replace(/^mysql:/, 'mariadb:')
      // semi-synchronous replication: an acknowledged commit is in the replica's relay log
      replica = await startMariaDBReplica(master, { semiSync: true })
      const url = new URL(masterUri)
      url.port = String(replica.port)
      replicaUri = url.toString()
    }, 240_000) // above the sum of the bounded steps, so a slow one fails with its own message

    afterAll(async () => {
      for (const manager of managers) await manager.disconnectAll()
      for (const store of stores) await store.close()
      await replica?.stop()
      await master?.stop()
      await cluster?.stop()
    })

    it('SIGKILL of the master: the replica is promoted once, writes resume on it, acknowledged writes kept', async () => {
      const promotions: PromotionResult[] = []
      for (const name of ['a', 'b']) {
        const store = new EtcdTopologyStore({ endpoints: cluster.endpoints, prefix: '/failover-mariadb' })
        stores.push(store)
        const manager = new ReplicationManager(null, failoverOptions(name, store, true))
        manager.on('error', () => undefined)
        manager.on('failover.automatic', (result) => promotions.push(result))
        managers.push(manager)
        await manager.addReplica('orders', { name: 'primary', role: 'master', dialect: 'mariadb', uri: masterUri })
        await manager.addReplica('orders', {
          name: 'r1',
          role: 'slave',
          dialect: 'mariadb',
          uri: replicaUri,
          lagTolerance: 1000,
        })
      }
      await managers[0]!.resolveWriteService('orders').dialect.ensureCollection({
        name: 'orders',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'by', type: 'string' },
        ],
        primaryKey: ['id'],
      })
      await waitFor(
        () =>
          managers.every((m) =>
            m.getReplicaStatus('orders').every((replicaStatus) => replicaStatus.status === 'healthy'),
          ),
        20_000,
        'healthy replicas',
      )
      const { acknowledged, resumedMs } = await writeAcrossKill(managers, 'orders', master.port, () => master.kill!())
      console.log(`MariaDB: first write on the new master ${resumedMs.join(', ')} ms after the SIGKILL`)
      expect(Math.max(...resumedMs)).toBeLessThan(5000)
      expect(promotions).toHaveLength(1)
      expect(promotions[0]!.promoted).toBe('r1')
      const stored = new Set(
        (await managers[0]!.resolveWriteService('orders').dialect.find('orders')).map((row) => Number(row.id)),
      )
      expect(acknowledged.filter((id) => !stored.has(id))).toEqual([])
    })
  },
)

import '@mostajs/replicator-dialect-sqlite'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicationManager } from '@mostajs/replicator'
import { runReplicatorService, serviceOptionsFromEnv } from '@mostajs/replicator/service'
import { EtcdTopologyStore } from '@mostajs/replicator-store-etcd'
import { etcdAvailable, startEtcdCluster, type RunningEtcd } from '@mostajs/replicator-testkit'
import { waitFor } from '@mostajs/replicator-testkit/vitest'

// The `run` service shares its topology through etcd when REPLICATOR_ETCD_ENDPOINTS is set:
// it publishes its project's master, and follows a promotion another process stores.

const required = process.env.REPLICATOR_REQUIRE_BACKENDS === '1'

it('REPLICATOR_ETCD_ENDPOINTS and REPLICATOR_AUTO_FAILOVER map onto the service options', () => {
  const options = serviceOptionsFromEnv({
    REPLICATOR_ETCD_ENDPOINTS: 'http://10.0.0.1:2379, http://10.0.0.2:2379',
    REPLICATOR_AUTO_FAILOVER: '1',
  })
  expect(options.etcdEndpoints).toEqual(['http://10.0.0.1:2379', 'http://10.0.0.2:2379'])
  expect(options.manager?.autoFailover).toBe(true)
  expect(serviceOptionsFromEnv({}).etcdEndpoints).toBeUndefined()
})

describe.skipIf(!etcdAvailable() && !required)('the run service on a shared etcd topology', () => {
  let cluster: RunningEtcd | undefined
  const dir = mkdtempSync(join(tmpdir(), 'replicator-service-etcd-'))
  afterAll(async () => {
    await cluster?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('publishes the master of the tree, and follows a promotion stored by another process', async () => {
    expect(etcdAvailable(), 'etcd is needed (Debian: etcd-server)').toBe(true)
    cluster = await startEtcdCluster(3)
    const tree = join(dir, 'tree.json')
    const setup = new ReplicationManager()
    await setup.addReplica('shop', { name: 'main', role: 'master', dialect: 'sqlite', uri: join(dir, 'main.db') })
    await setup.addReplica('shop', {
      name: 'copy',
      role: 'slave',
      dialect: 'sqlite',
      uri: join(dir, 'copy.db'),
      replication: 'managed',
    })
    await setup.saveToFile(tree)
    await setup.disconnectAll()

    const service = await runReplicatorService({ tree, quiet: true, etcdEndpoints: cluster.endpoints })
    const store = new EtcdTopologyStore({ endpoints: cluster.endpoints })
    try {
      const published = await store.read('shop')
      expect(published).toMatchObject({ master: 'main', epoch: 0 })
      // another process promoted `copy` (its record is what the service must follow)
      await store.compareAndSet('shop', published!.revision, { master: 'copy', epoch: 1 })
      await waitFor(() => service.manager.getEpoch('shop') === 1, 2000, 'the service follows')
      expect(service.manager.resolveWriteService('shop').dialect.maskedUri).toContain('copy.db')
    } finally {
      await service.stop()
      await store.close()
    }
  })
})

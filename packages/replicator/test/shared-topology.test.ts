import '@mostajs/replicator-dialect-postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileTopologyStore, ReplicationManager, type EntityService, type TopologyStore } from '@mostajs/replicator'
import { EtcdTopologyStore } from '@mostajs/replicator-store-etcd'
import {
  etcdAvailable,
  startEtcdCluster,
  startPostgres,
  startPostgresStandby,
  type RunningEtcd,
  type RunningPostgres,
} from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

// Several managers (application instances) share one topology through etcd, or through a file
// on one host: a promotion made by one is followed by the others within a second, and what
// they resolved before is fenced.

const { available, skipNote } = privateServer('postgres')
const required = process.env.REPLICATOR_REQUIRE_BACKENDS === '1'

for (const kind of ['etcd', 'file'] as const)
  describe.skipIf(!available || (kind === 'etcd' && !etcdAvailable() && !required))(
    `a topology shared through ${kind} by several managers${skipNote}`,
    () => {
      let cluster: RunningEtcd | undefined
      const directory = mkdtempSync(join(tmpdir(), 'replicator-shared-'))
      let master: RunningPostgres
      let standby: RunningPostgres
      let masterUri = ''
      let standbyUri = ''
      const managers: ReplicationManager[] = []
      const stores: TopologyStore[] = []
      const portOf = (service: EntityService) => Number(new URL(service.dialect.maskedUri).port)

      /** A manager as an application instance would make it: its own etcd client, or its own handle on the file. */
      const instance = async (name: string) => {
        const store =
          kind === 'etcd'
            ? new EtcdTopologyStore({ endpoints: cluster!.endpoints, prefix: '/shared-test' })
            : new FileTopologyStore(join(directory, 'topology.json'))
        stores.push(store)
        const manager = new ReplicationManager(null, {
          heartbeatIntervalMs: 50,
          healthCheckIntervalMs: 200,
          heartbeatId: name,
          topologyStore: store,
        })
        manager.on('error', () => undefined)
        managers.push(manager)
        await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
        await manager.addReplica('shop', {
          name: 'standby',
          role: 'slave',
          dialect: 'postgres',
          uri: standbyUri,
          lagTolerance: 2000,
        })
        return manager
      }

      beforeAll(async () => {
        if (kind === 'etcd') {
          expect(etcdAvailable(), 'etcd is needed (Debian: etcd-server)').toBe(true)
          cluster = await startEtcdCluster(3)
        }
        master = await startPostgres()
        masterUri = await master.createDatabase('shop')
        standby = await startPostgresStandby(master)
        const url = new URL(masterUri)
        url.port = String(standby.port)
        standbyUri = url.toString()
      })

      afterAll(async () => {
        for (const manager of managers) await manager.disconnectAll()
        for (const store of stores) await store.close()
        await standby?.stop()
        await master?.stop()
        await cluster?.stop()
        rmSync(directory, { recursive: true, force: true })
      })

      it('a promotion by one instance is followed by the others within a second; their old services are fenced', async () => {
        const [a, b] = [await instance('a'), await instance('b')]
        await a.resolveWriteService('shop').dialect.ensureCollection({
          name: 'orders',
          columns: [
            { name: 'id', type: 'integer' },
            { name: 'total', type: 'integer' },
          ],
          primaryKey: ['id'],
        })
        await waitFor(
          () => a.getReplicaStatus('shop').find((replica) => replica.name === 'standby')!.status === 'healthy',
          15_000,
          'standby healthy',
        )
        const before = b.resolveWriteService('shop')
        expect(portOf(before)).toBe(master.port)
        const followed: Array<{ master: string; epoch: number }> = []
        b.on('topology.followed', (event) => followed.push(event))

        await a.promoteToMaster('shop', 'standby')
        const promotedAt = Date.now()
        await waitFor(() => portOf(b.resolveWriteService('shop')) === standby.port, 1000, 'b writes to the new master')
        const followMs = Date.now() - promotedAt
        console.log(`followed by another instance ${followMs} ms after the promotion returned`)
        expect(followMs).toBeLessThan(1000)
        expect(followed).toEqual([{ project: 'shop', master: 'standby', previousMaster: 'primary', epoch: 1 }])
        expect(b.getEpoch('shop')).toBe(1)
        await expectReplicatorError(before.create('orders', { id: 1, total: 1 }), 'FENCED') // a stale view writes nowhere
        await b.resolveWriteService('shop').create('orders', { id: 2, total: 2 })
        expect(await a.resolveWriteService('shop').findById('orders', 2)).toMatchObject({ total: 2 })
        // b sees the old master as a fenced slave, as a
        expect(b.getReplicaStatus('shop').find((replica) => replica.name === 'primary')).toMatchObject({
          role: 'slave',
          status: 'fenced',
        })

        // an instance started later, from the old configuration, follows the stored topology at once
        const c = await instance('c')
        expect(portOf(c.resolveWriteService('shop'))).toBe(standby.port)
        expect(c.getEpoch('shop')).toBe(1)
      })
    },
  )

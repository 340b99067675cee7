import '@mostajs/replicator-dialect-postgres'
import type { ChildProcess } from 'node:child_process'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager, type PromotionResult } from '@mostajs/replicator'
import { EtcdTopologyStore } from '@mostajs/replicator-store-etcd'
import {
  createNetworkNamespace,
  etcdAvailable,
  networkNamespacesAvailable,
  startEtcdCluster,
  startPartitionableLink,
  startPostgres,
  startPostgresStandby,
  type NetworkNamespace,
  type PartitionableLink,
  type RunningEtcd,
  type RunningPostgres,
} from '@mostajs/replicator-testkit'
import { privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'
import { startInstance } from './fixtures/instances.js'
import { failoverOptions } from './fixtures/failover-options.js'

// The coordinator, an application instance in a network namespace of the test's own, loses
// etcd (a partition: packets dropped, no reset) while it still reaches the databases, and the
// master dies. It must not promote: another instance takes the lease once it expired and
// promotes one of the two standbys. Once the partition heals, the first follows it.

const { available, skipNote } = privateServer('postgres')
const namespaces = networkNamespacesAvailable()
const required = process.env.REPLICATOR_REQUIRE_BACKENDS === '1'

describe.skipIf(!available || !namespaces || (!etcdAvailable() && !required))(
  `a coordinator cut off from etcd${skipNote}${namespaces ? '' : ' (skipped: network namespaces need root and iproute2)'}`,
  () => {
    let cluster: RunningEtcd | undefined
    let namespace: NetworkNamespace | undefined
    const servers: RunningPostgres[] = []
    const links: PartitionableLink[] = []
    let child: ChildProcess | undefined
    let other: ReplicationManager | undefined
    let store: EtcdTopologyStore | undefined
    afterAll(async () => {
      child?.kill('SIGKILL')
      await other?.disconnectAll()
      await store?.close()
      for (const link of links) await link.close()
      await namespace?.remove()
      for (const server of servers.reverse()) await server.stop()
      await cluster?.stop()
    })

    it('does not promote; the other instance promotes once; it follows after the partition', async () => {
      expect(etcdAvailable(), 'etcd is needed (Debian: etcd-server)').toBe(true)
      cluster = await startEtcdCluster(3)
      const master = await startPostgres()
      servers.push(master)
      const masterUri = await master.createDatabase('shop')
      const standbys = [await startPostgresStandby(master), await startPostgresStandby(master)]
      servers.push(...standbys)
      const uriAt = (host: string, port: number) => {
        const url = new URL(masterUri)
        url.hostname = host
        url.port = String(port)
        return url.toString()
      }
      const setup = await connectDialect({ dialect: 'postgres', uri: masterUri })
      await setup.ensureCollection({
        name: 'orders',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'by', type: 'string' },
        ],
        primaryKey: ['id'],
      })
      await setup.close()

      // the instance in the namespace reaches every server through a link the test can cut
      namespace = await createNetworkNamespace()
      const link = async (port: number) => {
        const made = await startPartitionableLink({ host: '127.0.0.1', port }, namespace!.hostAddress)
        links.push(made)
        return made
      }
      const masterLink = await link(master.port)
      const standbyLinks = [await link(standbys[0]!.port), await link(standbys[1]!.port)]
      const etcdLinks: PartitionableLink[] = []
      for (const endpoint of cluster.endpoints) etcdLinks.push(await link(Number(new URL(endpoint).port)))
      const settings = {
        name: 'a',
        endpoints: etcdLinks.map((made) => `http://${made.host}:${made.port}`),
        prefix: '/partition',
        masterUri: uriAt(masterLink.host, masterLink.port),
        standbyUris: standbyLinks.map((made) => uriAt(made.host, made.port)),
        firstId: 1,
      }
      const instance = await startInstance(settings, namespace.wrap)
      child = instance.child
      const lines = instance.lines
      store = new EtcdTopologyStore({ endpoints: cluster.endpoints, prefix: '/partition' })
      await waitFor(async () => (await store!.coordinator('shop')) === 'a', 10_000, 'a coordinates')

      const promotions: PromotionResult[] = []
      other = new ReplicationManager(null, failoverOptions('b', store))
      other.on('error', () => undefined)
      other.on('failover.automatic', (result) => promotions.push(result))
      await other.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
      for (const [index, standby] of standbys.entries())
        await other.addReplica('shop', {
          name: `s${index + 1}`,
          role: 'slave',
          dialect: 'postgres',
          uri: uriAt('127.0.0.1', standby.port),
          lagTolerance: 60_000,
        })
      await waitFor(
        () => lines.filter((line) => line.startsWith('ack ')).length >= 20,
        20_000,
        'a writes through its links',
      )
      await waitFor(
        () => other!.getReplicaStatus('shop').every((replica) => replica.status === 'healthy'),
        20_000,
        'b sees every replica healthy',
      )

      for (const made of etcdLinks) made.cut() // a still reaches the databases, not etcd
      await master.kill!()
      await waitFor(() => promotions.length > 0, 30_000, 'b promotes once the lease of a expired')
      await new Promise((resolve) => setTimeout(resolve, 3000)) // room for a to do something wrong
      expect(lines.filter((line) => line.startsWith('promoted '))).toEqual([])
      for (const made of etcdLinks) made.mend()

      const promoted = promotions[0]!.promoted
      const newMasterLink = standbyLinks[promoted === 's1' ? 0 : 1]!
      const healedAt = lines.length
      await waitFor(
        () => lines.slice(healedAt).some((line) => line.startsWith('ack ') && line.endsWith(` ${newMasterLink.port}`)),
        30_000,
        'a writes to the new master after the partition',
      )
      expect(promotions).toHaveLength(1)
      expect(lines.filter((line) => line.startsWith('promoted '))).toEqual([])
      // exactly one standby left recovery: no second promotion by anyone
      const inRecovery: boolean[] = []
      for (const standby of standbys) {
        const direct = await connectDialect({ dialect: 'postgres', uri: uriAt('127.0.0.1', standby.port) })
        inRecovery.push((await direct.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]!.r)
        await direct.close()
      }
      expect(inRecovery.filter((recovering) => !recovering)).toHaveLength(1)
      const acknowledgedAfter = lines
        .slice(healedAt)
        .filter((line) => line.startsWith('ack '))
        .map((line) => line.split(' ')[2])
      expect(acknowledgedAfter.filter((port) => port !== String(newMasterLink.port))).toEqual([])
    })
  },
)

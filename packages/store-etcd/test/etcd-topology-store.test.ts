import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  FileTopologyStore,
  MemoryTopologyStore,
  type ProjectTopology,
  type TopologyStore,
} from '@mostajs/replicator-core'
import { EtcdTopologyStore } from '@mostajs/replicator-store-etcd'
import { etcdAvailable, startEtcdCluster, type RunningEtcd } from '@mostajs/replicator-testkit'
import { waitFor } from '@mostajs/replicator-testkit/vitest'

// The contract every topology store keeps, on a private 3-member etcd cluster, in a file and in memory:
// one winner per compare-and-set, and every watcher hears every change.

const required = process.env.REPLICATOR_REQUIRE_BACKENDS === '1'
let cluster: RunningEtcd | undefined
const opened: TopologyStore[] = []
beforeAll(async () => {
  if (etcdAvailable()) cluster = await startEtcdCluster(3)
})
const directory = mkdtempSync(join(tmpdir(), 'replicator-topology-'))
afterAll(async () => {
  for (const store of opened) await store.close().catch(() => undefined)
  await cluster?.stop()
  rmSync(directory, { recursive: true, force: true })
})

const kinds = [
  {
    kind: 'memory',
    available: () => true,
    // one process: both handles are the same store
    pair: () => {
      const store = new MemoryTopologyStore()
      return [store, store] as const
    },
  },
  {
    kind: 'file',
    available: () => true,
    // two handles on one file, as two processes of one host would hold
    pair: () => {
      const path = join(directory, `${Math.random().toString(36).slice(2)}.json`)
      const stores: [TopologyStore, TopologyStore] = [new FileTopologyStore(path), new FileTopologyStore(path)]
      opened.push(...stores)
      return stores
    },
  },
  {
    kind: 'etcd',
    available: () => etcdAvailable() || required,
    // two clients, as two processes would hold
    pair: () => {
      const prefix = `/test-${Math.random().toString(36).slice(2)}`
      const open = () => new EtcdTopologyStore({ endpoints: cluster!.endpoints, prefix })
      const stores: [TopologyStore, TopologyStore] = [open(), open()]
      opened.push(...stores)
      return stores
    },
  },
] as const

for (const { kind, available, pair } of kinds) {
  describe.skipIf(!available())(`${kind} topology store`, () => {
    it('one winner per compare-and-set; a stale revision loses', async () => {
      expect(kind !== 'etcd' || cluster, 'etcd is needed (Debian: etcd-server)').toBeTruthy()
      const [a, b] = pair()
      expect(await a.read('shop')).toBeNull()
      const first = await a.compareAndSet('shop', null, { master: 'primary', epoch: 1 })
      expect(first).toMatchObject({ project: 'shop', master: 'primary', epoch: 1 })
      expect(await b.compareAndSet('shop', null, { master: 'other', epoch: 1 })).toBeNull()
      expect(await b.read('shop')).toEqual(first)
      const second = await b.compareAndSet('shop', first!.revision, { master: 'standby', epoch: 2 })
      expect(second!.revision).toBeGreaterThan(first!.revision)
      expect(await a.compareAndSet('shop', first!.revision, { master: 'primary', epoch: 2 })).toBeNull()
      // two writers racing from the same revision: exactly one wins, 20 times over
      let revision = second!.revision
      for (let round = 0; round < 20; round++) {
        const results = await Promise.all([
          a.compareAndSet('shop', revision, { master: 'a', epoch: 3 + round }),
          b.compareAndSet('shop', revision, { master: 'b', epoch: 3 + round }),
        ])
        const winners = results.filter((result) => result !== null)
        expect(winners).toHaveLength(1)
        revision = winners[0]!.revision
      }
    })

    it('a watcher hears a change made through another handle within a second', async () => {
      const [a, b] = pair()
      const heard: ProjectTopology[] = []
      const stop = await b.watch('orders', (topology) => heard.push(topology))
      const written = await a.compareAndSet('orders', null, { master: 'r2', epoch: 4 })
      const started = Date.now()
      await waitFor(() => heard.length === 1, 1000, 'the change heard')
      expect(Date.now() - started).toBeLessThan(1000)
      expect(heard[0]).toEqual(written)
      await stop()
      await a.compareAndSet('orders', written!.revision, { master: 'r1', epoch: 5 })
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(heard).toHaveLength(1) // stopped watchers hear nothing more
    })
  })
}

describe.skipIf(!etcdAvailable() && !required)('etcd topology store when a member dies', () => {
  it('writes and watches go on through the other members, with one winner per revision', async () => {
    expect(cluster, 'etcd is needed (Debian: etcd-server)').toBeTruthy()
    const prefix = `/member-${Math.random().toString(36).slice(2)}`
    const open = () => new EtcdTopologyStore({ endpoints: cluster!.endpoints, prefix, client: { dialTimeout: 2000 } })
    const [a, b]: [TopologyStore, TopologyStore] = [open(), open()]
    opened.push(a, b)
    const heard: ProjectTopology[] = []
    await b.watch('shop', (topology) => heard.push(topology))
    const first = await a.compareAndSet('shop', null, { master: 'primary', epoch: 1 })
    await waitFor(() => heard.length === 1, 2000, 'first change heard')
    await cluster!.killMember(0)
    let second: ProjectTopology | null = null
    await waitFor(
      async () => {
        second = await a.compareAndSet('shop', first!.revision, { master: 'standby', epoch: 2 }).catch(() => null)
        if (second) return true
        const now = await a.read('shop').catch(() => null)
        if (now && now.revision !== first!.revision) second = now // an earlier attempt committed
        return second !== null
      },
      15_000,
      'a write after the member died',
    )
    expect(second).toMatchObject({ master: 'standby', epoch: 2 })
    await waitFor(() => heard.some((topology) => topology.epoch === 2), 15_000, 'the change heard')
    expect(await b.compareAndSet('shop', first!.revision, { master: 'primary', epoch: 2 })).toBeNull()
  })
})

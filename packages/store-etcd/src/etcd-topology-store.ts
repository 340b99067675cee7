import { Etcd3, type IOptions, type Watcher } from 'etcd3'
import { ReplicatorError, type Leadership, type ProjectTopology, type TopologyStore } from '@mostajs/replicator-core'

/** Options of {@link EtcdTopologyStore}. */
export interface EtcdTopologyStoreOptions {
  /** Client URLs of the etcd members (`http://host:2379`). */
  endpoints: string[]
  /** Key prefix of this deployment's records (default `/mostajs-replicator`). */
  prefix?: string
  /** Passed to the etcd3 client (auth, TLS; dial timeout and per-call deadline, 5 s each by default). */
  client?: Omit<IOptions, 'hosts'>
}

/**
 * Topology records in etcd, one key per project. A write is an etcd transaction comparing the
 * key's mod revision (create revision 0 for a first write), so it succeeds for one writer only;
 * the record's revision is that mod revision. Watchers hear every put, from any process.
 */
export class EtcdTopologyStore implements TopologyStore {
  private readonly client: Etcd3
  private readonly prefix: string
  private readonly watchers = new Set<Watcher>()

  constructor(options: EtcdTopologyStoreOptions) {
    if (!options.endpoints.length)
      throw new ReplicatorError('CONFIG_INVALID', 'EtcdTopologyStore needs at least one endpoint.')
    // a call the cluster does not answer fails after 5 s instead of waiting for ever (a
    // promotion or a write waiting on the store must be able to give up); streams are exempt
    this.client = new Etcd3({
      dialTimeout: 5000,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + 5000 }),
      ...options.client,
      hosts: options.endpoints,
    })
    this.prefix = (options.prefix ?? '/mostajs-replicator').replace(/\/+$/, '')
  }

  private key(project: string): string {
    return `${this.prefix}/projects/${encodeURIComponent(project)}/topology`
  }

  async read(project: string): Promise<ProjectTopology | null> {
    const response = await this.client.get(this.key(project)).exec()
    const kv = response.kvs[0]
    return kv ? recordOf(project, kv.value.toString(), Number(kv.mod_revision)) : null
  }

  async compareAndSet(
    project: string,
    expectedRevision: number | null,
    value: { master: string; epoch: number },
  ): Promise<ProjectTopology | null> {
    const key = this.key(project)
    const text = JSON.stringify({ master: value.master, epoch: value.epoch })
    const guard =
      expectedRevision === null
        ? this.client.if(key, 'Create', '==', 0)
        : this.client.if(key, 'Mod', '==', expectedRevision)
    const response = await guard.then(this.client.put(key).value(text)).commit()
    if (!response.succeeded) return null
    return { project, ...value, revision: Number(response.header.revision) }
  }

  async watch(project: string, changed: (topology: ProjectTopology) => void): Promise<() => Promise<void>> {
    const watcher = await this.client.watch().key(this.key(project)).create()
    this.watchers.add(watcher)
    watcher.on('put', (kv) => changed(recordOf(project, kv.value.toString(), Number(kv.mod_revision))))
    return async () => {
      this.watchers.delete(watcher)
      await watcher.cancel()
    }
  }

  /**
   * Campaigns for the project's coordinator key, held by an etcd lease of `ttlMs` (whole
   * seconds, at least 2) that etcd3 renews every third of it. A holder counts itself leader
   * only within two thirds of the TTL after its last successful renewal: a process that cannot
   * renew (paused, cut off) stops acting before the key expires and another can take it.
   */
  async lead(project: string, holder: string, ttlMs: number): Promise<Leadership> {
    const key = this.coordinatorKey(project)
    const ttl = Math.max(2, Math.ceil(ttlMs / 1000))
    const trustMs = (ttl * 1000 * 2) / 3
    let lease = this.client.lease(ttl)
    let renewedAt = 0
    let elected = false
    let closed = false
    const watch = (current: typeof lease) => {
      current.on('keepaliveSucceeded', () => {
        renewedAt = Date.now()
      })
      current.on('lost', () => {
        elected = false
        if (!closed) watch((lease = this.client.lease(ttl)))
      })
    }
    watch(lease)
    const claim = async () => {
      if (closed || elected) return
      const id = await lease.grant()
      const response = await this.client
        .if(key, 'Create', '==', 0)
        .then(this.client.put(key).value(holder).lease(id))
        .commit()
      if (response.succeeded) {
        elected = true
        renewedAt = Date.now()
      }
    }
    const timer = setInterval(() => void claim().catch(() => undefined), Math.max(200, (ttl * 1000) / 3))
    timer.unref()
    await claim().catch(() => undefined)
    return {
      isLeader: () => elected && Date.now() - renewedAt < trustMs,
      close: async () => {
        closed = true
        clearInterval(timer)
        elected = false
        await lease.revoke().catch(() => undefined) // the key goes with its lease
      },
    }
  }

  /** Who holds the coordinator key of `project` now (its `holder`: a manager's heartbeatId), or null. */
  async coordinator(project: string): Promise<string | null> {
    return this.client.get(this.coordinatorKey(project)).string()
  }

  private coordinatorKey(project: string): string {
    return `${this.prefix}/projects/${encodeURIComponent(project)}/coordinator`
  }

  async close(): Promise<void> {
    for (const watcher of this.watchers) await watcher.cancel().catch(() => undefined)
    this.watchers.clear()
    this.client.close()
  }
}

function recordOf(project: string, text: string, revision: number): ProjectTopology {
  const { master, epoch } = JSON.parse(text) as { master: string; epoch: number }
  return { project, master, epoch, revision }
}

import type { Leadership, ProjectTopology, TopologyStore } from './topology-store.js'

/**
 * The store of a single process (the default): the records live in memory (the tree file
 * keeps the topology across restarts). Watchers are called in the same process.
 */
export class MemoryTopologyStore implements TopologyStore {
  private readonly records = new Map<string, ProjectTopology>()
  private readonly watchers = new Map<string, Set<(topology: ProjectTopology) => void>>()
  private revision = 0

  async read(project: string): Promise<ProjectTopology | null> {
    const record = this.records.get(project)
    return record ? { ...record } : null
  }

  async compareAndSet(
    project: string,
    expectedRevision: number | null,
    value: { master: string; epoch: number },
  ): Promise<ProjectTopology | null> {
    const current = this.records.get(project)
    if ((current?.revision ?? null) !== expectedRevision) return null
    const record = { project, ...value, revision: ++this.revision }
    this.records.set(project, record)
    for (const changed of this.watchers.get(project) ?? []) changed({ ...record })
    return { ...record }
  }

  async watch(project: string, changed: (topology: ProjectTopology) => void): Promise<() => Promise<void>> {
    let watchers = this.watchers.get(project)
    if (!watchers) this.watchers.set(project, (watchers = new Set()))
    watchers.add(changed)
    return async () => {
      watchers.delete(changed)
    }
  }

  /** One process: it coordinates every project. */
  async lead(): Promise<Leadership> {
    return { isLeader: () => true, close: async () => undefined }
  }

  async close(): Promise<void> {
    this.watchers.clear()
  }
}

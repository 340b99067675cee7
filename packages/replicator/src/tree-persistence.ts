import { jsonPath } from '@mostajs/replicator-core'
import type { RuleSet } from '@mostajs/replicator-cdc'
import { loadTreeFile, resolveEnvReferences, writeTreeFile } from '@mostajs/replicator-persistence'
import type { ManagerHost } from './manager-host.js'
import type { Topology } from './topology.js'
import { mastersFirst, treeOf } from './tree.js'

/** The tree file: saves (on request and automatically), and loads that reconnect every replica. */
export class TreePersistence {
  private autoPersistPath: string | undefined
  private persistQueue: Promise<void> = Promise.resolve()

  constructor(
    private readonly host: Pick<ManagerHost, 'emit' | 'report'>,
    private readonly topology: Topology,
    private readonly ruleSet: RuleSet,
  ) {}

  /**
   * Writes the topology (replicas with their URIs as given, routing, rules, epochs) atomically,
   * keyed by name as the original library did (its monitor reads it). Replacing a file of an
   * older form (a 0.2 file, version 1) keeps it as `<path>.v<form>.bak` and emits `tree.migrated`.
   */
  async saveToFile(path: string): Promise<void> {
    const written = await writeTreeFile(path, treeOf(this.topology.projects.values(), this.ruleSet.stored()))
    if (written.formatBackup && written.previousFormat !== null)
      this.host.emit('tree.migrated', { path, from: written.previousFormat, backup: written.formatBackup })
  }

  /**
   * Loads a tree file and **reconnects** every replica (`${ENV}` references resolved). A
   * replica that cannot be reached is added as unhealthy and retried by the health checks.
   * Reads this release's files and the original `@mostajs/replicator` 0.2 ones (keyed, no
   * `version`; rule defaults filled in). A malformed file, or one holding a masked password
   * (`***`) → CONFIG_INVALID listing each problem's JSON path; nothing is changed.
   */
  async loadFromFile(path: string): Promise<void> {
    const { tree, format } = await loadTreeFile(path)
    for (const [project, replicas] of Object.entries(tree.replicas)) {
      // fail before touching anything; the path is the one in the file as written
      replicas.forEach((replica, index) =>
        resolveEnvReferences(replica.uri, jsonPath(['replicas', project, format === 1 ? index : replica.name, 'uri'])),
      )
    }
    for (const [project, replicas] of Object.entries(tree.replicas)) {
      for (const { fenced, ...config } of mastersFirst(replicas)) {
        if (this.topology.projects.get(project)?.replicas.has(config.name)) continue
        await this.topology.connectReplica(project, config, { tolerateDown: true, fenced: fenced === true })
      }
      const state = this.topology.projects.get(project)
      if (!state) continue
      if (tree.routing[project]) state.router.strategy = tree.routing[project]
      state.epoch = Math.max(state.epoch, tree.epochs[project] ?? 0)
    }
    this.ruleSet.load(tree.rules)
  }

  /**
   * Saves to `path` after every topology change (add, remove, routing, promotion, rules). A
   * file of an older form there is rewritten in the current one by the first save, which
   * keeps it as `<path>.v<form>.bak` and emits `tree.migrated` (logged as a warning).
   */
  enableAutoPersist(path: string): void {
    this.autoPersistPath = path
    this.changed()
  }

  /** Stops automatic saving. */
  disableAutoPersist(): void {
    this.autoPersistPath = undefined
  }

  /** Resolves once every pending automatic save is on disk. */
  async flush(): Promise<void> {
    await this.persistQueue
  }

  /** Saves the tree when auto-persist is on (after any change of the topology, routing or rules). */
  changed(): void {
    const path = this.autoPersistPath
    if (!path) return
    this.persistQueue = this.persistQueue.then(() => this.saveToFile(path)).catch((error) => this.host.report(error))
  }
}

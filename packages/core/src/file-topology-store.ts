import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { ReplicatorError } from './errors.js'
import type { Leadership, ProjectTopology, TopologyStore } from './topology-store.js'

/** The file's content. */
interface StoredTopology {
  revision: number
  projects: Record<string, { master: string; epoch: number; revision: number }>
  /** Coordinator of each project: who, and until when (ms since the epoch; one host, one clock). */
  coordinators: Record<string, { holder: string; until: number }>
}

const EMPTY: StoredTopology = { revision: 0, projects: {}, coordinators: {} }
/** A lock file older than this was left by a process that died holding it. */
const STALE_LOCK_MS = 5000

/**
 * A topology shared by the processes of one host through a JSON file (a `run` service and
 * the application beside it, say), without etcd. Every change is made under an exclusive
 * lock file and written by an atomic rename; watchers poll the file. Coordinator leases are
 * expiry times in the file, renewed every third of their TTL; a holder trusts its lease for
 * two thirds of it. For processes on several hosts, use etcd.
 */
export class FileTopologyStore implements TopologyStore {
  private readonly lockPath: string
  private readonly timers = new Set<NodeJS.Timeout>()

  constructor(
    private readonly path: string,
    private readonly pollMs = 100,
  ) {
    this.lockPath = `${path}.lock`
  }

  async read(project: string): Promise<ProjectTopology | null> {
    const stored = (await this.load()).projects[project]
    return stored ? { project, ...stored } : null
  }

  compareAndSet(
    project: string,
    expectedRevision: number | null,
    value: { master: string; epoch: number },
  ): Promise<ProjectTopology | null> {
    return this.change((file) => {
      if ((file.projects[project]?.revision ?? null) !== expectedRevision) return null
      file.revision++
      file.projects[project] = { master: value.master, epoch: value.epoch, revision: file.revision }
      return { project, ...file.projects[project]! }
    })
  }

  async watch(project: string, changed: (topology: ProjectTopology) => void): Promise<() => Promise<void>> {
    let seen = (await this.read(project))?.revision ?? 0
    const timer = setInterval(() => {
      this.read(project)
        .then((record) => {
          if (!record || record.revision <= seen) return
          seen = record.revision
          changed(record)
        })
        .catch(() => undefined) // read again at the next tick
    }, this.pollMs)
    timer.unref()
    this.timers.add(timer)
    return async () => {
      clearInterval(timer)
      this.timers.delete(timer)
    }
  }

  async lead(project: string, holder: string, ttlMs: number): Promise<Leadership> {
    let renewedAt = 0
    let closed = false
    const campaign = async () => {
      const now = Date.now()
      const held = await this.change((file) => {
        const current = file.coordinators[project]
        if (current && current.holder !== holder && current.until > now) return false
        file.coordinators[project] = { holder, until: now + ttlMs }
        return true
      })
      if (held && !closed) renewedAt = now
    }
    const timer = setInterval(() => void campaign().catch(() => undefined), Math.max(50, ttlMs / 3))
    timer.unref()
    this.timers.add(timer)
    await campaign().catch(() => undefined)
    return {
      isLeader: () => !closed && Date.now() - renewedAt < (ttlMs * 2) / 3,
      close: async () => {
        closed = true
        clearInterval(timer)
        this.timers.delete(timer)
        await this.change((file) => {
          if (file.coordinators[project]?.holder === holder) delete file.coordinators[project]
        }).catch(() => undefined)
      },
    }
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer)
    this.timers.clear()
  }

  private async load(): Promise<StoredTopology> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return structuredClone(EMPTY)
      throw error
    }
    try {
      return { ...structuredClone(EMPTY), ...(JSON.parse(text) as StoredTopology) }
    } catch (error) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `The topology file ${this.path} is not valid JSON: ${(error as Error).message}`,
        {
          cause: error,
        },
      )
    }
  }

  /** Applies `edit` to the file under the lock, and writes the file if it changed. */
  private async change<T>(edit: (file: StoredTopology) => T): Promise<T> {
    await this.lock()
    try {
      const file = await this.load()
      const before = JSON.stringify(file)
      const result = edit(file)
      if (JSON.stringify(file) !== before) {
        const temporary = `${this.path}.${process.pid}.tmp`
        await writeFile(temporary, `${JSON.stringify(file, null, 2)}\n`)
        await rename(temporary, this.path) // readers see the old file or the new one, whole
      }
      return result
    } finally {
      await rm(this.lockPath, { force: true })
    }
  }

  private async lock(): Promise<void> {
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        const handle = await open(this.lockPath, 'wx')
        await handle.writeFile(String(process.pid))
        await handle.close()
        return
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      }
      const held = await stat(this.lockPath).catch(() => null)
      if (held && Date.now() - held.mtimeMs > STALE_LOCK_MS) await rm(this.lockPath, { force: true })
      if (Date.now() > deadline)
        throw new ReplicatorError(
          'CONNECTION_FAILED',
          `The topology file ${this.path} stayed locked for 10 s (${this.lockPath}).`,
        )
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 10))
    }
  }
}

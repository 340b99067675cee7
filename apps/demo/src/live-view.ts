import type { ReplicationManager } from '@mostajs/replicator'

/** What the load generator counted so far. */
export interface LoadCounters {
  writes: number
  reads: number
  writeErrors: number
}

/**
 * The live terminal view: replicas with measured lag and their share of the reads, rules
 * with throughput and lag. On a terminal it redraws in place; in a log it prints a compact
 * line per refresh instead.
 */
export class LiveView {
  private drawnLines = 0
  private lastApplied = new Map<string, { at: number; applied: number }>()
  private readonly startedAt = Date.now()

  constructor(
    private readonly manager: ReplicationManager,
    private readonly load: LoadCounters,
    private readonly interactive = process.stdout.isTTY === true,
  ) {}

  /** Prints a message above the view (the view is redrawn under it). */
  note(text: string): void {
    this.erase()
    process.stdout.write(`${text}\n`)
  }

  render(): void {
    const lines = this.lines()
    if (!this.interactive) {
      process.stdout.write(`${lines.compact}\n`)
      return
    }
    this.erase()
    process.stdout.write(`${lines.full.join('\n')}\n`)
    this.drawnLines = lines.full.length
  }

  /** Leaves the last drawing on screen and stops redrawing over it. */
  freeze(): void {
    this.drawnLines = 0
  }

  private erase(): void {
    if (!this.interactive || !this.drawnLines) return
    process.stdout.write(`\x1b[${this.drawnLines}A\x1b[0J`)
    this.drawnLines = 0
  }

  private lines(): { full: string[]; compact: string } {
    const seconds = (Date.now() - this.startedAt) / 1000
    const full = [
      `  ── t=${seconds.toFixed(1)}s  writes ${this.load.writes} (${Math.round(this.load.writes / Math.max(seconds, 0.001))}/s)  reads ${this.load.reads}  write errors ${this.load.writeErrors}`,
    ]
    const compact = [`  t=${seconds.toFixed(1)}s w=${this.load.writes} r=${this.load.reads}`]
    full.push(
      `  ${'project'.padEnd(10)} ${'replica'.padEnd(10)} ${'role'.padEnd(7)} ${'kind'.padEnd(8)} ${'state'.padEnd(9)} ${'lag ms'.padStart(7)} ${'reads'.padStart(6)}`,
    )
    for (const project of this.manager.listProjects()) {
      const replicas = this.manager.getReplicaStatus(project)
      const totalReads = replicas.reduce((sum, replica) => sum + replica.readsRouted, 0)
      for (const replica of replicas) {
        const share = totalReads ? `${Math.round((replica.readsRouted / totalReads) * 100)}%` : '-'
        const kind = replica.role === 'slave' ? (replica.replication ?? 'native') : ''
        full.push(
          `  ${project.padEnd(10)} ${replica.name.padEnd(10)} ${replica.role.padEnd(7)} ${kind.padEnd(8)} ${replica.status.padEnd(9)} ${String(replica.lag ?? '-').padStart(7)} ${share.padStart(6)}`,
        )
        compact.push(
          `${replica.name}:${replica.status}/${replica.lag ?? '-'}ms${replica.role === 'slave' ? `/${share} reads` : ''}`,
        )
      }
    }
    for (const rule of this.manager.listRules()) {
      const stats = this.manager.getSyncStats(rule.name)
      const applied = stats.recordsSynced
      const previous = this.lastApplied.get(rule.name)
      const now = Date.now()
      const rate =
        previous && now > previous.at ? Math.round(((applied - previous.applied) * 1000) / (now - previous.at)) : 0
      this.lastApplied.set(rule.name, { at: now, applied })
      full.push(
        `  rule ${rule.name}: ${applied} applied (${rate}/s), lag ${stats.lagMs} ms, dead letters ${stats.deadLettered}`,
      )
      compact.push(`${rule.name}:${applied}@${rate}/s lag ${stats.lagMs}ms`)
    }
    return { full, compact: compact.join('  ') }
  }
}

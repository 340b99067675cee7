import { HEARTBEAT_COLLECTION } from '@mostajs/replicator-core'
import { measureLag, type MasterHeartbeat } from './lag.js'
import type { MonitoredReplica } from './replica-state.js'

/** Heartbeats written between two clean-ups of the rows of managers that stopped long ago. */
const CLEANUP_EVERY = 2000
const STALE_HEARTBEAT_MS = 86_400_000

/** Options of {@link LagMonitor}. */
export interface LagMonitorOptions {
  /** This manager's heartbeat row (each manager writes and reads its own). */
  heartbeatId: string
  intervalMs: number
  /** The replicas to measure now: the master (when there is one) and the slaves to read. */
  view(): { master?: MonitoredReplica; slaves: MonitoredReplica[] }
  /** After a replica's figures were updated. */
  measured(replica: MonitoredReplica): void
  /** True while measuring must wait (a promotion is running). */
  paused(): boolean
  report(error: unknown): void
}

/**
 * Measures replication lag as pt-heartbeat does: writes a heartbeat (sequence + the master's
 * clock) to the master, reads back the newest one each slave applied, and derives each
 * slave's lag from the master's clock alone.
 */
export class LagMonitor {
  /** Last heartbeat sequence handed out (issued, maybe not yet committed). */
  issued = 0n
  /** The newest heartbeat confirmed on the master. */
  latest: MasterHeartbeat | undefined
  private written = 0
  private running = false
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly options: LagMonitorOptions) {}

  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs)
    this.timer.unref()
    void this.tick()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Hands out the next heartbeat sequence (a fencing write uses one). */
  nextSequence(): bigint {
    return ++this.issued
  }

  private async tick(): Promise<void> {
    if (this.running || this.options.paused()) return
    this.running = true
    try {
      await this.measureNow()
    } catch (error) {
      this.options.report(error)
    } finally {
      this.running = false
    }
  }

  /** One measurement: a master heartbeat (when reachable) and every slave's applied heartbeat. */
  async measureNow(): Promise<void> {
    const { master, slaves } = this.options.view()
    if (master?.connected && master.dialect.heartbeat) await this.beat(master)
    await Promise.all(
      slaves.map(async (slave) => {
        try {
          const store = slave.dialect.heartbeat!
          // every writer's row in one read, when the store can: other instances' tokens need them
          const all = store.readAll ? await store.readAll() : null
          if (all) slave.appliedBy = new Map([...all].map(([writer, heartbeat]) => [writer, heartbeat.sequence]))
          const applied = all ? (all.get(this.options.heartbeatId) ?? null) : await store.read(this.options.heartbeatId)
          slave.appliedSequence = applied?.sequence ?? null
          slave.lastHeartbeatAt = applied?.at ?? null
          slave.lagMs = measureLag(this.latest, applied, Date.now())
        } catch (error) {
          slave.lastError = (error as Error).message
        }
        this.options.measured(slave)
      }),
    )
  }

  private async beat(master: MonitoredReplica): Promise<void> {
    const source = this.options.heartbeatId
    try {
      // continue the sequence after a restart
      if (this.issued === 0n) this.issued = (await master.dialect.heartbeat?.read(source))?.sequence ?? 0n
      const written = await master.dialect.heartbeat!.write(++this.issued, source)
      if (++this.written % CLEANUP_EVERY === 0) {
        const before = new Date(written.at.getTime() - STALE_HEARTBEAT_MS)
        await master.dialect.delete(HEARTBEAT_COLLECTION, { at: { $lt: before } }).catch(() => undefined)
      }
      this.latest = { ...written, confirmedAtMs: Date.now() }
      master.lastHeartbeatAt = written.at
      master.appliedSequence = written.sequence
    } catch (error) {
      master.lastError = (error as Error).message
    }
  }
}

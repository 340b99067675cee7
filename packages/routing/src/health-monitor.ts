import { withTimeout } from '@mostajs/replicator-core'
import type { MonitoredReplica } from './replica-state.js'

/** Options of {@link HealthMonitor}. */
export interface HealthMonitorOptions {
  intervalMs: number
  /** Consecutive failed checks before a replica is unhealthy. */
  failureThreshold: number
  replicas(): MonitoredReplica[]
  /** After a replica that was never reached connected (create its tables, start its feeds). */
  reconnected(replica: MonitoredReplica): Promise<void>
  /** Whether to read the database's own replication figures of this replica. */
  wantsNativeStatus(replica: MonitoredReplica): boolean
  /** After a replica was checked. */
  checked(replica: MonitoredReplica): void
}

/** Pings every replica periodically, reconnects those never reached, and counts failures. */
export class HealthMonitor {
  private running = false
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly options: HealthMonitorOptions) {}

  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  private async tick(): Promise<void> {
    if (this.running) return
    this.running = true
    try {
      await Promise.all(this.options.replicas().map((replica) => this.check(replica)))
    } finally {
      this.running = false
    }
  }

  private async check(replica: MonitoredReplica): Promise<void> {
    try {
      if (!replica.connected) {
        await replica.dialect.connect()
        replica.connected = true
        await this.options.reconnected(replica)
      }
      await withTimeout(replica.dialect.ping(), Math.max(1000, this.options.intervalMs))
      replica.failures = 0
      replica.healthy = true
      replica.lastError = undefined
      if (replica.dialect.replication && this.options.wantsNativeStatus(replica)) {
        replica.native = await replica.dialect.replication!.status().catch(() => replica.native)
      }
    } catch (error) {
      replica.failures++
      replica.lastError = (error as Error).message
      if (replica.failures >= this.options.failureThreshold) replica.healthy = false
    }
    this.options.checked(replica)
  }
}

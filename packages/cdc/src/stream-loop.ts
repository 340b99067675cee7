import { maskSecretsInText } from '@mostajs/replicator-core'

/** A continuous streaming loop (see `ReplicationManager.getStreamState`). */
export interface StreamState {
  /** Rule name (`<rule>.r` for the reverse direction, `managed.<project>.<replica>` for a managed feed). */
  name: string
  kind: 'rule' | 'managed'
  /** Failed attempts since the last success (the loop backs off meanwhile). */
  consecutiveFailures: number
  /** Failed attempts since the loop started. */
  totalFailures: number
  /** Message of the last failure (URIs masked); null after a success. */
  lastError: string | null
  lastSuccessAt: Date | null
}

/** Longest pause between two attempts of a failing loop. */
const MAX_BACKOFF_MS = 30_000

/**
 * Runs `step` every `intervalMs` until stopped. A failure is reported and retried with a
 * doubling pause (a target or source that is down is not hammered); a success resets it.
 */
export class StreamLoop {
  readonly state: StreamState
  private stopped = false
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> = Promise.resolve()
  private delay: number

  constructor(
    name: string,
    kind: StreamState['kind'],
    private readonly step: () => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly report: (error: unknown) => void,
  ) {
    this.state = { name, kind, consecutiveFailures: 0, totalFailures: 0, lastError: null, lastSuccessAt: null }
    this.delay = intervalMs
    this.running = this.tick()
  }

  private async tick(): Promise<void> {
    if (this.stopped) return
    try {
      await this.step()
      this.delay = this.intervalMs
      this.state.consecutiveFailures = 0
      this.state.lastError = null
      this.state.lastSuccessAt = new Date()
    } catch (error) {
      this.report(error)
      this.state.consecutiveFailures++
      this.state.totalFailures++
      this.state.lastError = maskSecretsInText((error as Error).message)
      this.delay = Math.min(Math.max(this.delay * 2, 100), MAX_BACKOFF_MS)
    }
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.running = this.tick()
    }, this.delay)
    this.timer.unref()
  }

  /** Stops the loop; resolves after the step that is running, if any. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.running
  }
}

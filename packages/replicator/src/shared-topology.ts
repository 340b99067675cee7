import {
  ReplicatorError,
  withTimeout,
  type Leadership,
  type ProjectTopology,
  type TopologyStore,
} from '@mostajs/replicator-core'

/** What a shared topology needs from the manager. */
export interface SharedTopologyHost {
  /** A record newer than this process's view: follow it (the promotion was made elsewhere). */
  follow(record: ProjectTopology): void
  report(error: unknown): void
}

/**
 * This process's link to a topology store shared with other processes: it publishes the
 * promotions made here (compare-and-set on the revision it last saw) and follows those made
 * elsewhere, as the store's watch reports them.
 */
export class SharedTopology {
  /** The newest record seen per project (its revision is the next compare-and-set's token). */
  private readonly latest = new Map<string, ProjectTopology>()
  private readonly stops = new Map<string, Promise<() => Promise<void>>>()
  private readonly leaderships = new Map<string, Promise<Leadership>>()
  /** When the store last confirmed this process's view of each project (its clock, ms). */
  private readonly confirmedAt = new Map<string, number>()
  private readonly confirming = new Map<string, { asked: number; done: Promise<void> }>()
  private readonly refresher: NodeJS.Timeout | undefined

  constructor(
    private readonly store: TopologyStore,
    private readonly host: SharedTopologyHost,
    /** Campaign to coordinate each joined project (automatic failover), as `holder`, with this lease. */
    private readonly coordination: { holder: string; leaseMs: number } | null = null,
    /**
     * A view the store has not confirmed for this long is stale: calls through writable
     * services wait until it is read again. A process that was paused (SIGSTOP, a long GC, a frozen VM) thus learns
     * of a promotion made meanwhile before it writes, instead of writing to the old master.
     */
    private readonly maxViewAgeMs = 1000,
  ) {
    if (!Number.isFinite(maxViewAgeMs)) return // Infinity: calls never wait for the store
    // the view is read again well within its age, so only a process that did not run goes stale
    let failing = false // an unreachable store is reported once, not at every tick
    this.refresher = setInterval(() => {
      for (const project of this.stops.keys())
        this.refresh(project).then(
          () => (failing = false),
          (error: unknown) => {
            if (!failing) this.host.report(error)
            failing = true
          },
        )
    }, maxViewAgeMs / 3)
    this.refresher.unref()
  }

  /**
   * Null when the store confirmed this process's view of `project` less than maxViewAgeMs ago
   * (the fast path of every call through a writable service); else a promise that reads it again.
   */
  whenStale(project: string): Promise<void> | null {
    const at = this.confirmedAt.get(project)
    if (at === undefined || Date.now() - at < this.maxViewAgeMs) return null // not shared (yet), or fresh
    return this.confirm(project)
  }

  /**
   * Reads the stored record of `project` again, with a read asked from now on (one asked
   * before, maybe answered before a pause, confirms nothing), and follows it; FENCED when the
   * store does not answer within 2 × maxViewAgeMs (at least 2 s): nothing is done on a view it
   * did not confirm.
   */
  confirm(project: string): Promise<void> {
    const waitMs = Number.isFinite(this.maxViewAgeMs) ? Math.max(2000, 2 * this.maxViewAgeMs) : 10_000
    const at = this.confirmedAt.get(project)
    return withTimeout(this.refresh(project, Date.now()), waitMs).catch((error: unknown) => {
      throw new ReplicatorError(
        'FENCED',
        `Project "${project}": the store did not confirm this process's view of the shared topology within ${waitMs} ms${at === undefined ? '' : ` (confirmed ${Date.now() - at} ms ago)`}: ${(error as Error).message}; nothing is done on a view that may be stale.`,
        { cause: error, details: { project } },
      )
    })
  }

  /**
   * Reads the stored record of `project`, follows it and notes when it was asked. A read under
   * way is shared when it was asked at `notBefore` or later.
   */
  refresh(project: string, notBefore = 0): Promise<void> {
    const running = this.confirming.get(project)
    if (running && running.asked >= notBefore) return running.done
    const asked = Date.now()
    const done = this.store.read(project).then((record) => {
      if (record) this.heard(record)
      this.confirmedAt.set(project, Math.max(asked, this.confirmedAt.get(project) ?? 0))
    })
    const entry = { asked, done }
    this.confirming.set(project, entry)
    const forget = () => {
      if (this.confirming.get(project) === entry) this.confirming.delete(project)
    }
    done.then(forget, forget)
    return done
  }

  /** Whether this process coordinates `project` now (always, with a store that has no leases). */
  isCoordinator(project: string): Promise<boolean> {
    if (!this.store.lead) return Promise.resolve(true)
    const leadership = this.leaderships.get(project)
    return leadership ? leadership.then((held) => held.isLeader()).catch(() => false) : Promise.resolve(false)
  }

  /**
   * Joins `project`: publishes this process's master when the store has no record yet, else
   * follows the stored one; then watches it. Idempotent.
   */
  async join(project: string, local: { master: string; epoch: number }): Promise<void> {
    if (this.stops.has(project)) return
    const watching = this.store.watch(project, (record) => this.heard(record))
    this.stops.set(project, watching)
    if (this.coordination && this.store.lead)
      this.leaderships.set(project, this.store.lead(project, this.coordination.holder, this.coordination.leaseMs))
    await watching
    const stored =
      (await this.store.read(project)) ??
      (await this.store.compareAndSet(project, null, local)) ??
      (await this.store.read(project))
    if (stored) this.heard(stored)
    this.confirmedAt.set(project, Date.now())
  }

  /** The newest record seen for `project`, if any. */
  current(project: string): ProjectTopology | undefined {
    return this.latest.get(project)
  }

  /**
   * Publishes a promotion made by this process. False when another process wrote the record
   * first (it promoted too): the caller reports the conflict, and the watch makes it follow.
   */
  async publish(project: string, value: { master: string; epoch: number }): Promise<boolean> {
    const seen = this.latest.get(project)
    const written = await this.store.compareAndSet(project, seen?.revision ?? null, value)
    if (written) this.heard(written)
    return written !== null
  }

  /** Re-applies the newest record of `project` (a replica it names was just added). */
  refollow(project: string): void {
    const record = this.latest.get(project)
    if (record) this.host.follow(record)
  }

  private heard(record: ProjectTopology): void {
    const seen = this.latest.get(record.project)
    if (seen && seen.revision >= record.revision) return
    this.latest.set(record.project, record)
    try {
      this.host.follow(record)
    } catch (error) {
      this.host.report(error)
    }
  }

  async close(): Promise<void> {
    clearInterval(this.refresher)
    const leaderships = [...this.leaderships.values()]
    this.leaderships.clear()
    for (const leadership of leaderships) await (await leadership.catch(() => null))?.close()
    const stops = [...this.stops.values()]
    this.stops.clear()
    for (const stop of stops) await (await stop.catch(() => async () => undefined))().catch(() => undefined)
  }
}

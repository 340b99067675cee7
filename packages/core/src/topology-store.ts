/** What every process of a project agrees on: which replica is the master, at which epoch. */
export interface ProjectTopology {
  project: string
  /** Name of the master replica. */
  master: string
  /** Promotion epoch: incremented by every promotion, it travels with it as a fencing token. */
  epoch: number
  /** The store's revision of this record: the token of the next compare-and-set. */
  revision: number
}

/**
 * Where several processes agree on each project's master and epoch. Writes are
 * compare-and-set on the record's revision, so two processes that promote at once cannot both
 * win; every process watches the record and follows a change made by another.
 */
export interface TopologyStore {
  /** The stored record of `project`, or null when none was written yet. */
  read(project: string): Promise<ProjectTopology | null>
  /**
   * Stores `master` and `epoch` for `project` if its revision is still `expectedRevision`
   * (null: no record yet). Returns the new record, or null when another process wrote first.
   */
  compareAndSet(
    project: string,
    expectedRevision: number | null,
    value: { master: string; epoch: number },
  ): Promise<ProjectTopology | null>
  /**
   * Campaigns to coordinate `project` (the one process that may promote on its own): resolves
   * at once; `isLeader()` turns true once elected, and false as soon as this process cannot
   * be sure to hold it any more (before another can take it over). Absent: every process leads.
   */
  lead?(project: string, holder: string, ttlMs: number): Promise<Leadership>
  /** Calls `changed` with each new record of `project` (from any process); resolves with a stop function. */
  watch(project: string, changed: (topology: ProjectTopology) => void): Promise<() => Promise<void>>
  close(): Promise<void>
}

/** This process's standing as the coordinator of a project (see `TopologyStore.lead`). */
export interface Leadership {
  isLeader(): boolean
  /** Leaves the campaign (another process may lead at once). */
  close(): Promise<void>
}

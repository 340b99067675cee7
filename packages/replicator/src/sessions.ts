import { AsyncLocalStorage } from 'node:async_hooks'
import { EntityService } from '@mostajs/replicator-core'
import { guardDialect } from './guarded-dialect.js'
import { requireMaster } from './project-state.js'
import { ReplicationSession, type SessionHost } from './session.js'
import type { Topology } from './topology.js'

/**
 * Read-your-writes sessions: explicit ones (`session()`), and the ambient one `withSession`
 * runs a piece of work under (AsyncLocalStorage), which routing honours by itself.
 */
export class Sessions implements SessionHost {
  /** The sessions of the work under way (withSession), per project. */
  private readonly ambient = new AsyncLocalStorage<ReadonlyMap<string, ReplicationSession>>()

  constructor(
    private readonly topology: Topology,
    /** This manager's heartbeat writer: the sequence its sessions' positions are counted in. */
    readonly writerId: string,
    /** Where a session's reads go (the routing, with the session's conditions). */
    readonly resolveReadService: SessionHost['resolveReadService'],
  ) {}

  /**
   * Runs `fn` (a request handler, a job) with a read-your-writes session of `project` that
   * resolveWriteService and resolveReadService use by themselves for everything `fn` does,
   * awaited calls included (AsyncLocalStorage): code that resolves services as usual reads its
   * own writes. A nested call for the same project keeps the session under way.
   *
   * `token`: the `session.token()` of an earlier request, from any instance (a cookie, a
   * header): this session also reads those writes.
   *
   * @example app.use((req, res, next) => rm.withSession('shop', next, { token: req.get('x-rw-token') }))
   */
  withSession<T>(project: string, fn: () => T, options: { token?: string } = {}): T {
    const current = this.currentSession(project)
    if (current) {
      if (options.token) current.absorb(options.token)
      return fn()
    }
    const sessions = new Map(this.ambient.getStore() ?? [])
    sessions.set(project, this.session(project, options.token))
    return this.ambient.run(sessions, fn)
  }

  /** The session `withSession` runs the current work under, for `project`; undefined outside one. */
  currentSession(project: string): ReplicationSession | undefined {
    return this.ambient.getStore()?.get(project)
  }

  /**
   * A read-your-writes session: writes through `session.write()` record the master position
   * they reached; `session.read()` then only uses slaves that applied it (else the master).
   */
  session(project: string, token?: string): ReplicationSession {
    this.topology.requireProject(project)
    return new ReplicationSession(this, project, token || undefined)
  }

  /** @internal The guarded master service of a session; records the position after each write. */
  sessionWriteService(session: ReplicationSession): EntityService {
    const state = this.topology.requireProject(session.project)
    const master = requireMaster(state)
    // A heartbeat issued after this write completed commits after it: a slave that applied
    // that heartbeat has the write.
    const recordPosition = () => session.recordPosition(state.lag.issued + 1n)
    return new EntityService(
      guardDialect(master.dialect, master, {
        onWrite: recordPosition,
        staleView: this.topology.staleView(session.project),
      }),
      state.schemas,
    )
  }
}

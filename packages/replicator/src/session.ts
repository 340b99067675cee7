import type { EntityService } from '@mostajs/replicator-core'

/** What a session needs of its manager. */
export interface SessionHost {
  sessionWriteService(session: ReplicationSession): EntityService
  resolveReadService(project: string, options: { session: ReplicationSession }): EntityService
}

/**
 * A read-your-writes session of one project. Reads after a write through `write()` only go
 * to slaves that applied it (or to the master until one has).
 */
export class ReplicationSession {
  /** Master heartbeat sequence a slave must have applied to serve this session's reads. */
  minSequence: bigint | undefined

  constructor(
    private readonly manager: SessionHost,
    readonly project: string,
  ) {}

  /** The master's service; each write moves the session's position forward. */
  write(): EntityService {
    return this.manager.sessionWriteService(this)
  }

  /** A service that sees every write made through this session. */
  read(): EntityService {
    return this.manager.resolveReadService(this.project, { session: this })
  }

  /** @internal */
  recordPosition(sequence: bigint): void {
    if (this.minSequence === undefined || sequence > this.minSequence) this.minSequence = sequence
  }
}

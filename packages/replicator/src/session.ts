import { ReplicatorError, type EntityService } from '@mostajs/replicator-core'

/** What a session needs of its manager. */
export interface SessionHost {
  sessionWriteService(session: ReplicationSession): EntityService
  resolveReadService(project: string, options: { session: ReplicationSession }): EntityService
  /** This manager's heartbeat writer (the positions its sessions record are in its sequence). */
  readonly writerId: string
}

const TOKEN_PREFIX = 'rw1.'
/** Writers a token remembers at most (the most recent positions are kept). */
const MAX_TOKEN_WRITERS = 8

/**
 * A read-your-writes session of one project. Reads after a write through `write()` only go
 * to slaves that applied it (or to the master until one has). `token()` carries the position
 * to another request or another instance (`ReplicationManager.withSession(project, fn, { token })`).
 */
export class ReplicationSession {
  /** Master heartbeat sequence a slave must have applied to serve this session's reads. */
  minSequence: bigint | undefined
  /** Positions of other instances' writers (from a token): a slave must have applied each. */
  readonly minApplied = new Map<string, bigint>()

  constructor(
    private readonly manager: SessionHost,
    readonly project: string,
    token?: string,
  ) {
    if (token) this.absorb(token)
  }

  /** The master's service; each write moves the session's position forward. */
  write(): EntityService {
    return this.manager.sessionWriteService(this)
  }

  /** A service that sees every write made through this session. */
  read(): EntityService {
    return this.manager.resolveReadService(this.project, { session: this })
  }

  /**
   * The session's position as a string to carry in a cookie or a header: any instance of the
   * application (any manager of the same topology) given it back reads these writes. It holds
   * heartbeat positions only (writer ids and sequence numbers), no data and no credentials.
   */
  token(): string {
    const positions = new Map(this.minApplied)
    if (this.minSequence !== undefined) positions.set(this.manager.writerId, this.minSequence)
    const body = { p: this.project, w: [...positions].slice(-MAX_TOKEN_WRITERS).map(([w, s]) => [w, s.toString()]) }
    return TOKEN_PREFIX + Buffer.from(JSON.stringify(body)).toString('base64url')
  }

  /** Adds the positions of a token (CONFIG_INVALID when it is malformed or of another project). */
  absorb(token: string): void {
    let body: { p?: unknown; w?: unknown }
    try {
      if (!token.startsWith(TOKEN_PREFIX)) throw new Error('prefix')
      body = JSON.parse(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8')) as typeof body
      if (!Array.isArray(body.w)) throw new Error('positions')
    } catch {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        'This read-your-writes token is malformed: it was not made by session.token().',
      )
    }
    if (body.p !== this.project)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `This read-your-writes token belongs to project "${String(body.p)}", not "${this.project}".`,
      )
    for (const entry of body.w as unknown[]) {
      const [writer, sequence] = Array.isArray(entry) ? entry : []
      if (typeof writer !== 'string' || typeof sequence !== 'string' || !/^\d{1,20}$/.test(sequence))
        throw new ReplicatorError(
          'CONFIG_INVALID',
          'This read-your-writes token is malformed: a position is not a writer and a sequence.',
        )
      if (writer === this.manager.writerId) this.recordPosition(BigInt(sequence))
      else if (BigInt(sequence) > (this.minApplied.get(writer) ?? -1n)) this.minApplied.set(writer, BigInt(sequence))
    }
  }

  /** @internal */
  recordPosition(sequence: bigint): void {
    if (this.minSequence === undefined || sequence > this.minSequence) this.minSequence = sequence
  }
}

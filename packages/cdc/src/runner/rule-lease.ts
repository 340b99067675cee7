import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import {
  ReplicatorError,
  type Dialect,
  type DialectOperations,
  type Position,
  type Row,
} from '@mostajs/replicator-core'
import { OFFSETS_COLLECTION } from './internal-tables.js'

/**
 * How long a rule's writer keeps it without renewing (ms) before another process may take it
 * over. Renewals come with every sync (every 200 ms by default) and batch, and a batch holds
 * the lease for as long as its transaction runs (see `holdIn`), so a short lease is safe.
 */
export const DEFAULT_LEASE_MS = 5000

export interface LeaseOptions {
  /** Who holds the lease: runners of one owner hand a rule over at once (a new master); others wait for expiry. */
  owner?: string
  /** Lease length (ms); renewed by every sync, snapshot page and applied batch. */
  leaseMs?: number
}

/** A process-unique owner name: host, pid and a random part (two managers in one process differ). */
export function newLeaseOwner(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
}

/** Who holds a rule this runner does not hold, and until when (unless renewed). */
export interface LeaseHolder {
  owner: string
  until: Date
}

/**
 * One writer per rule. The lease lives in the rule's offset row on the target: an owner, an
 * expiry and an epoch (a fencing token). Taking the lease increments the epoch with a
 * compare-and-set; every offset write is a compare-and-set on that epoch inside the batch's
 * transaction, so a writer that lost the lease (paused past its expiry, then resumed) has its
 * batch rolled back instead of overwriting its successor's work. Clocks only decide *when* a
 * lease may be taken over; the epoch alone decides who may write.
 */
export class RuleLease {
  readonly owner: string
  readonly leaseMs: number
  private epoch: number | null = null
  private renewedAt = 0

  constructor(
    private readonly rule: string,
    private readonly target: Dialect,
    options: LeaseOptions = {},
  ) {
    this.owner = options.owner ?? newLeaseOwner()
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS
  }

  /** Takes (or renews) the lease; returns the other holder when it is not ours to take. */
  async acquire(): Promise<LeaseHolder | null> {
    if (this.epoch !== null && (await this.renewIfDue())) return null
    this.epoch = null
    const row = await this.target.findOne(OFFSETS_COLLECTION, { rule: this.rule })
    const now = Date.now()
    if (!row) {
      const inserted = await this.target
        .insert(OFFSETS_COLLECTION, { rule: this.rule, snapshot_done: false, ...this.claim(1, now) })
        .then(() => true)
        .catch(() => false) // another process inserted it first: look again
      if (inserted) return this.held(1, now)
      return this.acquireFrom(await this.target.findOne(OFFSETS_COLLECTION, { rule: this.rule }))
    }
    return this.acquireFrom(row)
  }

  private async acquireFrom(row: Row | null): Promise<LeaseHolder | null> {
    if (!row) return this.acquire()
    const now = Date.now()
    const until = Number(row.lease_until ?? 0)
    if (typeof row.owner === 'string' && row.owner !== this.owner && until > now)
      return { owner: row.owner, until: new Date(until) }
    const epoch = row.epoch === null || row.epoch === undefined ? null : Number(row.epoch)
    const next = (epoch ?? 0) + 1
    // another owner's lease is taken only while it is still expired: a renewal committed since
    // it was read (a batch that held it) keeps it
    const expired = typeof row.owner === 'string' && row.owner !== this.owner ? { lease_until: { $lte: now } } : {}
    const taken = await this.target.update(
      OFFSETS_COLLECTION,
      { rule: this.rule, epoch, ...expired },
      { $set: this.claim(next, now) },
    )
    if (taken === 1) return this.held(next, now)
    const current = await this.target.findOne(OFFSETS_COLLECTION, { rule: this.rule })
    return { owner: String(current?.owner ?? 'another process'), until: new Date(Number(current?.lease_until ?? now)) }
  }

  /** Renews the lease when a third of it has passed; throws FENCED when another process took it. */
  async keepAlive(): Promise<void> {
    if (!(await this.renewIfDue())) throw this.lost()
  }

  /**
   * Renews the lease as the first statement of a batch's transaction `tx`: the offset row stays
   * locked until it commits, so a batch that takes longer than the lease is not taken over
   * half-way (the other process waits, then finds the lease renewed). FENCED if it was lost.
   */
  async holdIn(tx: DialectOperations): Promise<void> {
    if (this.epoch === null) throw this.lost()
    const now = Date.now()
    const held = await tx.update(
      OFFSETS_COLLECTION,
      { rule: this.rule, epoch: this.epoch },
      { $set: { lease_until: now + this.leaseMs } },
    )
    if (held !== 1) {
      this.epoch = null
      throw this.lost()
    }
  }

  /**
   * Writes the rule's offset in the open transaction `tx`, only while this lease's epoch is
   * the stored one (renewing it): a writer that lost the lease throws FENCED and its
   * transaction rolls back.
   */
  async writeOffset(tx: DialectOperations, position: Position | null, origin: string | null): Promise<void> {
    if (this.epoch === null) throw this.lost()
    const now = Date.now()
    const written = await tx.update(
      OFFSETS_COLLECTION,
      { rule: this.rule, epoch: this.epoch },
      {
        $set: {
          position: position ? JSON.stringify(position) : null,
          snapshot_done: true,
          origin,
          updated_at: new Date(now),
          lease_until: now + this.leaseMs,
        },
      },
    )
    if (written !== 1) {
      this.epoch = null
      throw this.lost()
    }
    this.renewedAt = now
  }

  /** Lets another process take the rule at once (a stopped stream, a closed manager). */
  async release(): Promise<void> {
    if (this.epoch === null) return
    const epoch = this.epoch
    this.epoch = null
    await this.target
      .update(OFFSETS_COLLECTION, { rule: this.rule, epoch }, { $set: { lease_until: 0 } })
      .catch(() => undefined) // an unreachable target: the lease expires by itself
  }

  private async renewIfDue(): Promise<boolean> {
    if (this.epoch === null) return false
    const now = Date.now()
    if (now - this.renewedAt < this.leaseMs / 3) return true
    const renewed = await this.target.update(
      OFFSETS_COLLECTION,
      { rule: this.rule, epoch: this.epoch },
      { $set: { owner: this.owner, lease_until: now + this.leaseMs } },
    )
    if (renewed !== 1) {
      this.epoch = null
      return false
    }
    this.renewedAt = now
    return true
  }

  private claim(epoch: number, now: number): Row {
    return { owner: this.owner, epoch, lease_until: now + this.leaseMs }
  }

  private held(epoch: number, now: number): null {
    this.epoch = epoch
    this.renewedAt = now
    return null
  }

  private lost(): ReplicatorError {
    return new ReplicatorError(
      'FENCED',
      `Rule "${this.rule}": another process took this rule over (its lease on the target expired); this process stops applying it.`,
      { details: { rule: this.rule, owner: this.owner } },
    )
  }
}

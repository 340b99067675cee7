import type { Duplex } from 'node:stream'
import pg from 'pg'
import * as copyStreams from 'pg-copy-streams'
import { formatLsn } from './pgoutput.js'
import { SpillFile, type CaptureSettings } from '@mostajs/replicator-core'

/** `both` of pg-copy-streams (CopyBoth mode), which its type declarations leave out. */
const copyBoth = (
  copyStreams as unknown as { both(text: string, options: { alignOnCopyDataFrame: boolean }): Duplex & pg.Submittable }
).both

/**
 * Session settings of the walsender, which writes the values' text: ISO dates (read the same
 * whatever the target's DateStyle) and exact floats, so the text can be handed on as it is.
 */
const NATIVE_TEXT_SESSION = '-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3'

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const PG_EPOCH_MICROS = 946_684_800_000_000n
const PG_EPOCH_MS = 946_684_800_000

/** One source transaction as the walsender sent it: its pgoutput messages, begin to commit. */
export interface StreamedTransaction {
  /** In memory; empty when the transaction was spilled. */
  messages: Buffer[]
  /** A transaction of more than `spillAfter` messages: all of them, in a temporary file. */
  spill?: SpillFile
  /** The relation messages of a spilled transaction (later transactions rely on them). */
  spilledRelations?: Buffer[]
  /** End LSN of the commit (from its message), the transaction's position. */
  commitEnd: bigint
  /** Commit time, ms since the Unix epoch. */
  commitTime: number
}

/**
 * A logical replication connection on one slot (the streaming replication protocol): the
 * server decodes the WAL once and pushes pgoutput messages as they commit, while the
 * transactions received earlier are being applied. Only positions the caller confirms are
 * ever reported back as flushed — a keepalive never acknowledges what was merely received —
 * so the slot keeps every change that is not applied yet.
 */
export class ReplicationStream {
  private readonly client: pg.Client
  private duplex: Duplex | undefined
  private current: Buffer[] | null = null
  /** The transaction being received, once it outgrew memory. */
  private spilling: { file: SpillFile; relations: Buffer[] } | null = null
  private readonly ready: StreamedTransaction[] = []
  private readyMessages = 0
  private confirmed: bigint
  /** Highest WAL position the server said it has sent (keepalives and data). */
  private serverSent = 0n
  private failure: Error | undefined
  private closed = false
  private waiters: Array<() => void> = []

  /** Pause reading the socket above this many buffered messages (memory stays bounded). */
  static readonly HIGH_WATER_MESSAGES = 60_000
  /** Messages of one transaction held in memory before the rest goes to a spill file. */
  readonly spillAfter: number
  private readonly spillDirectory: string | undefined
  /** Spill files not handed out yet (removed when the stream closes). */
  private readonly spills = new Set<SpillFile>()

  private constructor(
    uri: string,
    private readonly slot: string,
    private readonly publication: string,
    from: bigint,
    connectTimeoutMs: number,
    settings: CaptureSettings,
  ) {
    this.spillAfter = settings.spillAfterChanges ?? 100_000
    this.spillDirectory = settings.spillDirectory
    this.client = new pg.Client({
      connectionString: uri,
      replication: 'database',
      connectionTimeoutMillis: connectTimeoutMs,
      application_name: 'mostajs-replicator',
      options: NATIVE_TEXT_SESSION,
    } as pg.ClientConfig)
    this.confirmed = from
  }

  /** Opens the connection and starts streaming the slot from `from` (0: from its confirmed position). */
  static async open(
    uri: string,
    slot: string,
    publication: string,
    from: bigint,
    connectTimeoutMs: number,
    settings: CaptureSettings = {},
  ): Promise<ReplicationStream> {
    const stream = new ReplicationStream(uri, slot, publication, from, connectTimeoutMs, settings)
    try {
      await stream.start()
    } catch (error) {
      await stream.close()
      throw error
    }
    return stream
  }

  private async start(): Promise<void> {
    this.client.on('error', (error) => this.fail(error))
    await this.client.connect()
    const quotedPublication = `"${this.publication.replaceAll('"', '""')}"`
    const duplex = copyBoth(
      `START_REPLICATION SLOT "${this.slot}" LOGICAL ${formatLsn(this.confirmed)} (proto_version '1', publication_names '${quotedPublication.replaceAll("'", "''")}')`,
      { alignOnCopyDataFrame: true },
    )
    this.duplex = duplex
    // START_REPLICATION either streams or fails at once (slot in use, missing publication…).
    // The data listener goes on first and stays: chunks come in bursts, none may be missed.
    await new Promise<void>((resolve, reject) => {
      let started = false
      duplex.on('data', (chunk: Buffer) => {
        this.receive(chunk)
        if (!started) {
          started = true
          resolve()
        }
      })
      duplex.on('error', (error: Error) => {
        if (!started) {
          started = true
          reject(error)
        } else this.fail(error)
      })
      duplex.on('end', () => {
        const error = new Error('the server ended the replication stream')
        if (!started) {
          started = true
          reject(error)
        } else this.fail(error)
      })
      this.client.query(duplex)
      // An idle slot sends nothing: ask for a keepalive, which also proves the stream is up.
      this.sendStatus(true)
    })
  }

  private receive(chunk: Buffer): void {
    const kind = chunk[0]
    if (kind === 0x77 /* 'w' XLogData */) {
      const walEnd = chunk.readBigUInt64BE(9)
      if (walEnd > this.serverSent) this.serverSent = walEnd
      const message = chunk.subarray(25)
      const tag = message[0]
      if (tag === 0x42 /* 'B' begin */) this.current = [message]
      else if (this.current) {
        try {
          this.keep(message, tag!)
        } catch (error) {
          // nothing is confirmed: the transaction is read again once the cause is fixed
          this.fail(error as Error)
          this.duplex?.pause()
          return
        }
      }
    } else if (kind === 0x6b /* 'k' keepalive */) {
      const walEnd = chunk.readBigUInt64BE(1)
      if (walEnd > this.serverSent) this.serverSent = walEnd
      if (chunk[17] === 1) this.sendStatus(false)
    }
    this.wake()
  }

  /**
   * Keeps one message of the transaction being received. A transaction goes on being held in
   * memory up to `spillAfter` messages, then all of it goes to a spill file: it is still
   * applied whole, in one target transaction, read back in parts.
   */
  private keep(message: Buffer, tag: number): void {
    const current = this.current!
    if (this.spilling) {
      this.spilling.file.write(message)
      if (tag === 0x52 /* 'R' relation */) this.spilling.relations.push(message)
    } else {
      current.push(message)
      if (current.length > this.spillAfter) {
        const file = new SpillFile(this.spillDirectory)
        this.spills.add(file)
        this.spilling = { file, relations: current.filter((kept) => kept[0] === 0x52) }
        for (const kept of current) file.write(kept)
        current.length = 0
      }
    }
    if (tag !== 0x43 /* 'C' commit */) return
    // Commit: flags (1), commit LSN (8), end LSN (8), time (8).
    const commitEnd = message.readBigUInt64BE(10)
    const commitTime = PG_EPOCH_MS + Number(message.readBigInt64BE(18) / 1000n)
    if (this.spilling) {
      this.spilling.file.flush()
      this.ready.push({
        messages: [],
        spill: this.spilling.file,
        spilledRelations: this.spilling.relations,
        commitEnd,
        commitTime,
      })
      this.readyMessages += 1
      this.spilling = null
    } else {
      this.ready.push({ messages: current, commitEnd, commitTime })
      this.readyMessages += current.length
    }
    this.current = null
    if (this.readyMessages > ReplicationStream.HIGH_WATER_MESSAGES) this.duplex?.pause()
  }

  /**
   * Status update. `write` = what was received. `flush`/`apply` = the confirmed position, sent
   * only with a confirmation (`withFlush`): the slot advances to `flush` alone, and a server
   * shutting down waits for `flush` to reach the end of its WAL when one is reported — so the
   * pings and keepalive answers report none (invalid), which lets it stop while changes that
   * are not applied yet stay in the slot.
   */
  private sendStatus(replyRequested: boolean, withFlush = false): void {
    if (!this.duplex || this.closed) return
    const message = Buffer.alloc(34) // 'r', write, flush, apply, clock, reply requested
    message[0] = 0x72
    message.writeBigUInt64BE(this.serverSent > this.confirmed ? this.serverSent : this.confirmed, 1)
    message.writeBigUInt64BE(withFlush ? this.confirmed : 0n, 9)
    message.writeBigUInt64BE(withFlush ? this.confirmed : 0n, 17)
    message.writeBigInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_MICROS, 25)
    message[33] = replyRequested ? 1 : 0
    this.duplex.write(message)
  }

  private fail(error: Error): void {
    if (this.closed) return
    this.failure ??= error
    this.wake()
  }

  private wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }

  /** Why the stream stopped, if it did (the caller reopens it from the confirmed position). */
  get error(): Error | undefined {
    return this.failure
  }

  /**
   * Takes complete transactions, about `maxMessages` worth. Waits until that many are
   * buffered or the server reports having sent everything up to `upTo` (the WAL end when the
   * caller asked): at most 200 ms once something is buffered, `timeoutMs` otherwise (then
   * resolves with none).
   */
  async take(maxMessages: number, upTo: bigint, timeoutMs: number): Promise<StreamedTransaction[]> {
    const started = Date.now()
    for (;;) {
      if (this.failure || this.serverSent >= upTo || this.readyMessages >= maxMessages) break
      if (Date.now() - started >= (this.ready.length ? 200 : timeoutMs)) break
      this.sendStatus(true) // a keepalive answer tells how far the server has sent
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
    if (this.failure && !this.ready.length) throw this.failure
    const taken: StreamedTransaction[] = []
    let messages = 0
    while (this.ready.length && (messages < maxMessages || !taken.length)) {
      // a spilled transaction is handed out alone (its reader then owns the file)
      if (this.ready[0]!.spill && taken.length) break
      const transaction = this.ready.shift()!
      taken.push(transaction)
      if (transaction.spill) {
        this.spills.delete(transaction.spill)
        messages += 1
        break
      }
      messages += transaction.messages.length
    }
    this.readyMessages -= messages
    if (this.readyMessages <= ReplicationStream.HIGH_WATER_MESSAGES / 2) this.duplex?.resume()
    return taken
  }

  /**
   * `upTo` when everything the server sent reached it and no transaction is buffered or half
   * received (so nothing of this slot committed before `upTo` is left to hand out), else null.
   */
  idleThrough(upTo: bigint): bigint | null {
    const quiet = !this.failure && this.serverSent >= upTo && !this.current && !this.spilling && !this.ready.length
    return quiet ? upTo : null
  }

  /** Reports `lsn` as applied: the slot may now forget everything up to it. */
  confirm(lsn: bigint): void {
    if (lsn <= this.confirmed) return
    this.confirmed = lsn
    this.sendStatus(false, true)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.wake()
    this.duplex?.destroy()
    for (const file of this.spills) file.remove()
    this.spills.clear()
    await this.client.end().catch(() => undefined)
  }
}

import {
  keyIdentity,
  keyOfRow,
  SpillFile,
  type ChangeEvent,
  type CollectionDescription,
  type Row,
  type CaptureSettings,
} from '@mostajs/replicator-core'
import { encodeEvent, sentColumns, truncatedTable, type ZongJiEvent } from './binlog-events.js'
import { withGtid } from './gtid-sets.js'
import { loadZongJi } from './zongji-module.js'

/** Where a binlog reader stands: the GTID position to resume from, and file + offset. */
export interface BinlogPosition {
  gtid: string
  file: string
  pos: number
}

/** A running ZongJi instance as far as this module uses it. */
interface ZongJiInstance {
  on(event: 'binlog', handler: (event: ZongJiEvent) => void): void
  on(event: 'error', handler: (error: Error) => void): void
  on(event: 'ready', handler: () => void): void
  start(options: Record<string, unknown>): void
  stop(): void
  gtidSet?: string
  options: { filename?: string; position?: number }
}

/**
 * Reads a MariaDB/MySQL binary log (ROW format) with ZongJi from a GTID position and buffers
 * whole committed transactions as change events until they are confirmed.
 */
export class BinlogReader {
  /** Committed transactions not confirmed yet: their events, or a spill file holding them. */
  private readonly transactions: Array<{ position: BinlogPosition; events: ChangeEvent[]; spill?: SpillFile }> = []
  private pending: ChangeEvent[] = []
  /** The transaction being read, once it outgrew memory. */
  private spilling: SpillFile | null = null
  /** Changes of one transaction held in memory before all of it goes to a spill file. */
  readonly spillAfter: number
  private zongji: ZongJiInstance | undefined
  private failure: Error | undefined
  private ready: Promise<void> | undefined
  /** Events of the buffered transactions. */
  private buffered = 0
  /**
   * Set while reading is paused because the buffer is full (the consumer is slower than the
   * binlog, or its target is down): reading resumes from here once it drained to half.
   */
  private resumeFrom: BinlogPosition | null = null
  /** Bumped at each pause: events of a stopped connection still in the queue are dropped. */
  private generation = 0
  /** Events buffered before reading pauses; a transaction is never split. */
  readonly highWater: number
  /** Where the current connection started reading. */
  private connectedFrom: string

  constructor(
    private readonly connection: { host: string; port: number; user: string; password: string },
    private readonly database: string,
    private readonly collections: string[],
    readonly startGtid: string,
    /** The table's description; `fresh` after a schema change. */
    private readonly describe: (collection: string, fresh?: boolean) => Promise<CollectionDescription>,
    private readonly decode: (row: Row, description: CollectionDescription) => Row,
    private readonly dialectName: string,
    private readonly settings: CaptureSettings = {},
  ) {
    this.connectedFrom = startGtid
    this.spillAfter = settings.spillAfterChanges ?? 100_000
    this.highWater = settings.binlogBufferEvents ?? 100_000
  }

  /** Connects and starts streaming from `startGtid`. */
  start(): Promise<void> {
    this.ready ??= this.connect(this.startGtid)
    return this.ready
  }

  private async connect(gtidSet: string): Promise<void> {
    const generation = this.generation
    this.connectedFrom = gtidSet
    const { default: ZongJi } = await loadZongJi()
    return new Promise<void>((resolve, reject) => {
      const zongji = new (ZongJi as unknown as new (options: Record<string, unknown>) => ZongJiInstance)({
        ...this.connection,
        timezone: 'Z',
        dateStrings: true,
        jsonStrings: true,
      })
      this.zongji = zongji
      zongji.on('ready', () => resolve())
      zongji.on('error', (error) => {
        if (generation !== this.generation) return // a connection stopped on purpose
        this.failure = error
        reject(error)
      })
      zongji.on('binlog', (event) => {
        void this.handle(event, generation)
      })
      zongji.start({
        gtidSet,
        // a replica-like client needs a server id of its own
        serverId: 1_000_000 + Math.floor(Math.random() * 1_000_000_000),
        includeEvents: [
          'tablemap',
          'writerows',
          'updaterows',
          'deleterows',
          'xid',
          'query',
          'rotate',
          'heartbeat',
          'mariadbgtid',
          'gtid',
        ],
        includeSchema: { [this.database]: this.collections },
      })
    })
  }

  private queue: Promise<void> = Promise.resolve()

  /**
   * Events are handled one at a time, in binlog order (describe() may wait on the server).
   * A commit's position is read when its event arrives: by the time the queue reaches it,
   * ZongJi may already have read the next transaction's GTID, and a position that includes a
   * transaction not yet applied would skip it after a restart.
   */
  private handle(event: ZongJiEvent, generation: number): Promise<void> {
    // a TRUNCATE is a statement of its own, committed where it stands (no XID follows)
    const type = event.getTypeName().toLowerCase()
    const commitPosition = type === 'xid' || (type === 'query' && truncatedTable(event)) ? this.position() : undefined
    // a TRUNCATE commits by itself: its GTID is not in ZongJi's set yet
    if (commitPosition && type === 'query') commitPosition.gtid = withGtid(commitPosition.gtid, event.gtid)
    this.queue = this.queue
      .then(() => this.process(event, commitPosition, generation))
      .catch((error: Error) => {
        this.failure = error
      })
    return this.queue
  }

  private async process(
    event: ZongJiEvent,
    commitPosition: BinlogPosition | undefined,
    generation: number,
  ): Promise<void> {
    if (generation !== this.generation) return // read again after the pause
    const type = event.getTypeName().toLowerCase()
    if (type === 'writerows' || type === 'updaterows' || type === 'deleterows') {
      const table = event.tableMap?.[event.tableId!]
      if (!table || table.parentSchema !== this.database || !this.collections.includes(table.tableName)) return
      let description = await this.describe(table.tableName)
      const known = new Set(description.columns.map((column) => column.name))
      const first = event.rows?.[0] as Row | { before: Row; after: Row } | undefined
      const image =
        first && 'after' in first && typeof first.after === 'object' ? first.after : (first as Row | undefined)
      // a column this reader does not know: the table changed (ALTER TABLE), describe it again
      if (image && Object.keys(image).some((name) => !known.has(name)))
        description = await this.describe(table.tableName, true)
      const source = {
        dialect: this.dialectName,
        database: this.database,
        position: { dialect: this.dialectName, value: {} },
        ts: event.timestamp ?? Date.now(),
      }
      const columns = table.columns
      for (const raw of event.rows ?? []) {
        if (type === 'writerows') {
          const after = this.decode(sentColumns(raw as Row, event.columns_present_bitmap, columns), description)
          this.keep({
            op: 'c',
            collection: table.tableName,
            key: keyOfRow(after, description.primaryKey),
            before: null,
            after,
            source: { ...source },
          })
        } else if (type === 'deleterows') {
          const before = this.decode(sentColumns(raw as Row, event.columns_present_bitmap, columns), description)
          this.keep({
            op: 'd',
            collection: table.tableName,
            key: keyOfRow(before, description.primaryKey),
            before,
            after: null,
            source: { ...source },
          })
        } else {
          const change = raw as { before: Row; after: Row }
          const before = this.decode(sentColumns(change.before, event.columns_present_bitmap, columns), description)
          // an image without some columns (NOBLOB, MINIMAL) holds what changed: the rest is as before
          const after = {
            ...before,
            ...this.decode(sentColumns(change.after, event.columns_present_bitmap2, columns), description),
          }
          const moved = keyIdentity(before, description.primaryKey) !== keyIdentity(after, description.primaryKey)
          if (moved) {
            this.keep({
              op: 'd',
              collection: table.tableName,
              key: keyOfRow(before, description.primaryKey),
              before,
              after: null,
              source: { ...source },
            })
          }
          this.keep({
            op: 'u',
            collection: table.tableName,
            key: keyOfRow(after, description.primaryKey),
            before,
            after,
            source: { ...source },
            // a moved row's image may lack columns: the apply takes them from the target's old row
            ...(moved ? { movedFrom: keyOfRow(before, description.primaryKey) } : {}),
          })
        }
      }
      return
    }
    if (type === 'query') {
      const truncated = truncatedTable(event)
      if (!truncated || truncated.schema !== this.database || !this.collections.includes(truncated.table)) return
      const source = {
        dialect: this.dialectName,
        database: this.database,
        position: { dialect: this.dialectName, value: {} },
        ts: event.timestamp ?? Date.now(),
      }
      this.keep({ op: 't', collection: truncated.table, key: null, before: null, after: null, source })
      this.commit(commitPosition ?? this.position())
      return
    }
    if (type === 'xid') this.commit(commitPosition ?? this.position())
  }

  /** Keeps one change of the transaction being read (in memory, or in its spill file). */
  private keep(event: ChangeEvent): void {
    if (this.spilling) {
      this.spilling.write(encodeEvent(event))
      return
    }
    this.pending.push(event)
    if (this.pending.length > this.spillAfter) {
      this.spilling = new SpillFile(this.settings.spillDirectory)
      for (const kept of this.pending) this.spilling.write(encodeEvent(kept))
      this.pending = []
    }
  }

  private commit(position: BinlogPosition): void {
    if (this.spilling) {
      this.spilling.flush()
      this.transactions.push({ position, events: [], spill: this.spilling })
      this.spilling = null
    } else if (this.pending.length) {
      for (const event of this.pending) event.source.position = { dialect: this.dialectName, value: { ...position } }
      this.transactions.push({ position, events: this.pending })
      this.buffered += this.pending.length
    }
    this.pending = []
    if (this.buffered >= this.highWater && !this.resumeFrom) this.pause(position)
  }

  /** Stops reading after the transaction at `position`; `confirm` resumes from there. */
  private pause(position: BinlogPosition): void {
    this.resumeFrom = position
    this.generation++
    this.pending = []
    this.spilling?.remove()
    this.spilling = null
    try {
      this.zongji?.stop()
    } catch {
      /* already stopped */
    }
  }

  private resume(): void {
    const from = this.resumeFrom!
    this.resumeFrom = null
    this.connect(from.gtid).catch(() => undefined) // a failure is kept in `failure` and reported by catchUp
  }

  /** True once the connection failed (killed, server restarted): the reader must be replaced. */
  get failed(): boolean {
    return this.failure !== undefined
  }

  /** The resume point after the last committed transaction seen. */
  position(): BinlogPosition {
    if (this.resumeFrom) return { ...this.resumeFrom }
    return {
      gtid: this.zongji?.gtidSet ?? this.connectedFrom,
      file: this.zongji?.options.filename ?? '',
      pos: this.zongji?.options.position ?? 0,
    }
  }

  /** Waits (bounded) until the reader has passed the server's binlog file + offset `target`. */
  async catchUp(target: { file: string; pos: number }, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (this.failure) throw this.failure
      if (this.resumeFrom) return // paused on a full buffer: what it holds is the caller's to take
      await this.queue
      const { file, pos } = this.position()
      if (file > target.file || (file === target.file && pos >= target.pos)) return
      if (Date.now() > deadline) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  /**
   * Buffered transactions, whole, up to about `maxEvents` events: those after the one of
   * `afterGtid` when it is still buffered (a caller reading ahead of its confirmations), else
   * from the oldest one not confirmed.
   */
  take(
    maxEvents: number,
    afterGtid: string | null,
  ): { events: ChangeEvent[]; position: BinlogPosition | null; spill?: SpillFile } {
    const events: ChangeEvent[] = []
    let position: BinlogPosition | null = null
    const start = afterGtid
      ? this.transactions.findIndex((transaction) => transaction.position.gtid === afterGtid) + 1
      : 0
    for (const transaction of this.transactions.slice(start)) {
      if (transaction.spill) {
        if (events.length) break // a spilled transaction is handed out alone, read from its start
        transaction.spill.rewind()
        return { events, position: transaction.position, spill: transaction.spill }
      }
      if (events.length && events.length + transaction.events.length > maxEvents) break
      events.push(...transaction.events)
      position = transaction.position
    }
    return { events, position }
  }

  /** Forgets buffered transactions up to (and including) `gtid`; resumes reading once the buffer drained to half. */
  confirm(gtid: string): void {
    const index = this.transactions.findIndex((transaction) => transaction.position.gtid === gtid)
    if (index >= 0) {
      for (const { events, spill } of this.transactions.splice(0, index + 1)) {
        this.buffered -= events.length
        spill?.remove()
      }
    }
    if (this.resumeFrom && this.buffered <= this.highWater / 2) this.resume()
  }

  /** Stops reading and removes the spill files. */
  stop(): void {
    this.generation++
    try {
      this.zongji?.stop()
    } catch {
      /* already stopped */
    }
    this.spilling?.remove()
    for (const { spill } of this.transactions) spill?.remove()
  }
}

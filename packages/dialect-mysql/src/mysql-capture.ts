import {
  ReplicatorError,
  type CaptureBacklog,
  type ChangeEvent,
  type CaptureOptions,
  type ChangeBatch,
  type ChangeCapture,
  type CollectionDescription,
  type Position,
  type ReadChangesOptions,
  type Row,
} from '@mostajs/replicator-core'
import { columnDecoder } from '@mostajs/replicator-core/sql'
import { binlogTimestamp, decodeEvent } from './binlog-events.js'
import { BinlogReader } from './binlog-reader.js'
import { gtidSetCovers } from './gtid-sets.js'
import type { MysqlDialect } from './mysql-dialect.js'

/** Where each capture's collections and starting GTID are kept (on the source). */
const CAPTURES_COLLECTION = '_replicator_captures'

/**
 * Change capture from the binary log in ROW format (ZongJi), resumed from a GTID position.
 * Refuses to start when `log_bin` is off or `binlog_format` is not ROW.
 */
export class MysqlCapture implements ChangeCapture {
  constructor(private readonly db: MysqlDialect) {}

  /** Stops every binlog reader (the dialect is closing). */
  closeAll(): void {
    for (const reader of this.readers.values()) reader.stop()
    this.readers.clear()
  }

  /** The binary log is retained server-wide (expire_logs_days), not per capture: nothing to report. */
  async backlog(): Promise<CaptureBacklog | null> {
    return null
  }

  private readonly readers = new Map<string, BinlogReader>()
  /** The last position each consumer confirmed (applied): where a lost connection reads again from. */
  private readonly confirmed = new Map<string, string>()

  /** The capture bookkeeping table on the source: where each capture starts (GTID). */
  private async capturesTable(): Promise<void> {
    await this.db.ensureCollection({
      name: CAPTURES_COLLECTION,
      primaryKey: ['name'],
      columns: [
        { name: 'name', type: 'string' },
        { name: 'start_gtid', type: 'text' },
        { name: 'collections', type: 'json' },
        { name: 'server_id', type: 'bigint' },
      ],
    })
    // tables of an earlier version lack the server id
    await this.db.ensureColumns(CAPTURES_COLLECTION, [{ name: 'server_id', type: 'bigint' }])
  }

  private async serverId(): Promise<number> {
    const [row] = await this.db.query<{ id: number | string }>('SELECT @@server_id AS id')
    return Number(row?.id ?? 0)
  }

  private async gtidPosition(): Promise<string> {
    const [row] = await this.db.query<{ gtid: string }>(
      this.db.serverIsMariaDB ? 'SELECT @@gtid_binlog_pos AS gtid' : 'SELECT @@gtid_executed AS gtid',
    )
    return String(row?.gtid ?? '')
  }

  /**
   * Under binlog_row_image = MINIMAL an insert logs only the columns its statement set: a
   * column filled by its default on the source would take the target's default, or NULL. Every
   * table is refused until the server logs FULL (or NOBLOB, whose partial updates are carried).
   */
  async uncapturable(collections: string[]): Promise<Array<{ collection: string; reason: string }>> {
    const image = await this.rowImage()
    if (image === 'MINIMAL')
      return collections.map((collection) => ({
        collection,
        reason: `binlog_row_image is MINIMAL on ${this.db.maskedUri}: inserts do not log the columns filled by defaults, so ${collection} would differ on the target; SET GLOBAL binlog_row_image = 'FULL' (or 'NOBLOB')`,
      }))
    if (image === 'FULL') return []
    const found: Array<{ collection: string; reason: string }> = []
    for (const collection of collections)
      if (!(await this.db.describeCollection(collection)).primaryKey.length)
        found.push({
          collection,
          reason: `${collection} has no primary key, and binlog_row_image is ${image} on ${this.db.maskedUri}: its changed rows are not logged whole, so the row a change meant could not be found; SET GLOBAL binlog_row_image = 'FULL' (or add a primary key)`,
        })
    return found
  }

  private async rowImage(): Promise<string> {
    const [row] = await this.db.query<{ image: string }>('SELECT @@global.binlog_row_image AS image')
    return String(row?.image).toUpperCase()
  }

  /**
   * A table without a key, read under LOCK TABLES … READ (which waits for the transactions
   * that wrote it and holds new writers back), with the GTID position then: the cut. Every
   * change of the table up to the read is at or before it, every later one after it.
   */
  async readExact(_name: string, collection: string): Promise<{ rows: Row[]; cut: Position }> {
    return this.db.transaction(async (tx) => {
      await tx.query(`LOCK TABLES ${this.db.flavor.quoteIdentifier(collection)} READ`)
      try {
        const rows = await tx.find(collection)
        const [row] = await tx.query<{ gtid: string }>(
          this.db.serverIsMariaDB ? 'SELECT @@gtid_binlog_pos AS gtid' : 'SELECT @@gtid_executed AS gtid',
        )
        return { rows, cut: { dialect: this.db.name, value: { gtid: String(row?.gtid ?? '') } } }
      } finally {
        await tx.query('UNLOCK TABLES')
      }
    })
  }

  covers(cut: Position, position: Position): boolean {
    return gtidSetCovers(
      String((cut.value as { gtid?: string }).gtid ?? ''),
      String((position.value as { gtid?: string }).gtid ?? ''),
    )
  }

  async setup(options: CaptureOptions): Promise<void> {
    const [settings] = await this.db.query<{ logBin: number | string; format: string }>(
      'SELECT @@global.log_bin AS logBin, @@global.binlog_format AS format',
    )
    if (Number(settings?.logBin) !== 1) {
      throw new ReplicatorError(
        'NOT_SUPPORTED',
        `[replicator:${this.db.name}] The binary log is off on ${this.db.maskedUri}; change capture needs it: start the server with --log-bin --binlog-format=ROW.`,
      )
    }
    if (String(settings?.format).toUpperCase() !== 'ROW') {
      throw new ReplicatorError(
        'NOT_SUPPORTED',
        `[replicator:${this.db.name}] binlog_format is ${settings?.format} on ${this.db.maskedUri}; change capture needs ROW (SET GLOBAL binlog_format = 'ROW', or --binlog-format=ROW).`,
      )
    }
    const image = await this.rowImage()
    for (const collection of options.collections) {
      const description = await this.db.describeCollection(collection)
      if (!description.primaryKey.length && image !== 'FULL')
        throw new ReplicatorError(
          'NOT_SUPPORTED',
          `[replicator:${this.db.name}] Collection "${collection}" has no primary key, and binlog_row_image is ${image}: change capture needs one or the other (SET GLOBAL binlog_row_image = 'FULL', or add a primary key).`,
          { details: { collection } },
        )
    }
    await this.capturesTable()
    const serverId = await this.serverId()
    const found = await this.db.findOne(CAPTURES_COLLECTION, { name: options.name })
    // A row written by another server came here by replication (this server was a replica,
    // since promoted): its GTID is a position in the old master's log, which this server's log
    // may not hold. The capture starts afresh here; the rule re-seeds what came before.
    const existing = found && Number(found.server_id ?? serverId) === serverId ? found : null
    const startGtid = existing ? String(existing.start_gtid) : await this.gtidPosition()
    await this.db.upsertMany(CAPTURES_COLLECTION, [
      { name: options.name, start_gtid: startGtid, collections: options.collections, server_id: serverId },
    ])
    const reader = this.readers.get(options.name)
    if (reader && existing && JSON.stringify(existing.collections) !== JSON.stringify(options.collections)) {
      reader.stop() // the collection list changed: read again with the new filter
      this.readers.delete(options.name)
    }
  }

  async drop(name: string): Promise<void> {
    this.readers.get(name)?.stop()
    this.readers.delete(name)
    this.confirmed.delete(name)
    await this.db.delete(CAPTURES_COLLECTION, { name }).catch((error) => {
      if (!(ReplicatorError.isInstance(error) && error.code === 'COLLECTION_NOT_FOUND')) throw error
    })
  }

  async read(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    const capture = await this.db.findOne(CAPTURES_COLLECTION, { name })
    if (!capture)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `[replicator:${this.db.name}] No capture "${name}" on ${this.db.maskedUri}; set it up first.`,
      )
    const from = options.after
      ? String((options.after.value as { gtid?: string }).gtid ?? '')
      : String(capture.start_gtid)
    let reader = this.readers.get(name)
    let start = from
    if (reader?.failed) {
      // The dump connection was lost (killed, server restarted): read again from what the
      // consumer confirmed, so what it was handed and did not apply comes again.
      start = this.confirmed.get(name) ?? from
      reader.stop()
      reader = undefined
    }
    if (!reader || (options.after === null && reader.startGtid !== from)) {
      reader?.stop()
      const url = new URL(this.db.config.uri)
      reader = new BinlogReader(
        {
          host: url.hostname || '127.0.0.1',
          port: Number(url.port || 3306),
          user: decodeURIComponent(url.username || 'root'),
          password: decodeURIComponent(url.password),
        },
        decodeURIComponent(url.pathname.slice(1)),
        capture.collections as string[],
        start,
        (collection, fresh) => {
          if (fresh) this.db.invalidateCatalog(collection)
          return this.db.describeCollection(collection)
        },
        (row, description) => this.decodeBinlogRow(row, description),
        this.db.name,
        this.db.config.capture,
      )
      this.readers.set(name, reader)
      await reader.start().catch((error: unknown) => {
        throw this.lostPosition(name, error) ?? error
      })
    }
    const [status] = await this.db.query<{ File: string; Position: number }>('SHOW MASTER STATUS')
    if (status)
      await reader.catchUp({ file: status.File, pos: Number(status.Position) }, 3000).catch((error: unknown) => {
        throw this.lostPosition(name, error) ?? error
      })
    const { events, position, spill } = reader.take(Math.max(1, options.maxEvents), options.after ? from : null)
    if (spill) {
      // A transaction too large to hold: read back from its spill file in parts.
      const value = { ...position! }
      const nextPart = async (): Promise<ChangeEvent[] | null> => {
        const records = spill.read(reader.spillAfter)
        if (!records.length) return null
        return records.map((record) => {
          const event = decodeEvent(record)
          event.source.position = { dialect: this.db.name, value: { ...value } }
          return event
        })
      }
      const first = await nextPart()
      return first
        ? { events: first, position: { dialect: this.db.name, value }, nextPart }
        : { events: [], position: { dialect: this.db.name, value } }
    }
    return { events, position: position ? { dialect: this.db.name, value: { ...position } } : null }
  }

  /** CAPTURE_LOST when the server no longer has the binary logs the capture's GTID needs (purged). */
  private lostPosition(name: string, error: unknown): ReplicatorError | null {
    const message = error instanceof Error ? error.message : String(error)
    if (!/could not find gtid|purged/i.test(message)) return null
    return new ReplicatorError(
      'CAPTURE_LOST',
      `[replicator:${this.db.name}] The binary logs capture "${name}" resumes from are gone on ${this.db.maskedUri} (purged): ${message}`,
      { details: { capture: name }, cause: error },
    )
  }

  /** A row image from the binlog → portable values, as a read of the table gives them. */
  private decodeBinlogRow(row: Row, description: CollectionDescription): Row {
    const decoded: Row = {}
    for (const column of description.columns) {
      let value = row[column.name]
      if (value === undefined) continue
      if (value !== null) {
        if (column.type === 'timestamp') value = binlogTimestamp(value)
        const decode = columnDecoder(this.db.flavor, column)
        if (decode) value = decode(value)
      }
      decoded[column.name] = value
    }
    return decoded
  }

  async confirm(name: string, position: Position): Promise<void> {
    const gtid = String((position.value as { gtid?: string }).gtid ?? '')
    this.confirmed.set(name, gtid)
    this.readers.get(name)?.confirm(gtid)
  }
}

import { HEARTBEAT_COLLECTION, HEARTBEAT_SCHEMA, type Heartbeat, type HeartbeatStore } from '../dialect.js'
import { ReplicatorError } from '../errors.js'
import type { SqlDialect } from './sql-dialect.js'

/** The heartbeat row of a SQL database, in {@link HEARTBEAT_COLLECTION} (created on first use). */
export class SqlHeartbeat implements HeartbeatStore {
  private ready = false

  constructor(private readonly dialect: SqlDialect) {}

  /** Forgets that the table exists (the connection was closed). */
  reset(): void {
    this.ready = false
  }

  /** Writes heartbeat `sequence` with the server's clock and returns it as stored. */
  async write(sequence: bigint, source = 'default', options: { evenIfReadOnly?: boolean } = {}): Promise<Heartbeat> {
    const { dialect } = this
    if (!this.ready) {
      await dialect.ensureCollection(HEARTBEAT_SCHEMA)
      this.ready = true
    }
    const { flavor } = dialect
    const q = (name: string) => flavor.quoteIdentifier(name)
    const values = `(${flavor.placeholder(1)}, ${flavor.placeholder(2)}, ${flavor.serverNowSql})`
    const upsert = flavor.upsertSql(
      q(HEARTBEAT_COLLECTION),
      [q('source'), q('sequence'), q('at')],
      [q('source')],
      values,
    )
    const params = [source, sequence.toString()]
    const writable = flavor.readWriteTransactionSql
    if (options.evenIfReadOnly && writable)
      await dialect.transaction(async (tx) => {
        await tx.query(writable) // a read-only default applies to new transactions; this one opts out
        await tx.query(upsert, params)
      })
    else await dialect.query(upsert, params)
    const written = await this.read(source)
    if (!written)
      throw new ReplicatorError(
        'QUERY_FAILED',
        `[replicator:${dialect.name}] The heartbeat just written to ${dialect.maskedUri} cannot be read back.`,
      )
    return written
  }

  /** Every writer's last heartbeat this database holds (one row per application instance). */
  async readAll(): Promise<Map<string, Heartbeat>> {
    try {
      const rows = await this.dialect.find(HEARTBEAT_COLLECTION)
      return new Map(
        rows.map((row) => [String(row.source), { sequence: BigInt(row.sequence as bigint), at: row.at as Date }]),
      )
    } catch (error) {
      if (ReplicatorError.isInstance(error) && error.code === 'COLLECTION_NOT_FOUND') return new Map()
      throw error
    }
  }

  /** The last heartbeat of `source` this database holds (written here, or replicated from its master); null when none arrived yet. */
  async read(source = 'default'): Promise<Heartbeat | null> {
    try {
      const row = await this.dialect.findOne(HEARTBEAT_COLLECTION, { source })
      if (!row) return null
      return { sequence: BigInt(row.sequence as bigint), at: row.at as Date }
    } catch (error) {
      if (ReplicatorError.isInstance(error) && error.code === 'COLLECTION_NOT_FOUND') return null
      throw error
    }
  }
}

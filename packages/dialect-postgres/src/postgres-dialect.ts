import { finished } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { registerDialect, type CollectionDescription, type DialectConfig } from '@mostajs/replicator-core'
import { runTransactionOn, SqlDialect, type SqlExecutor } from '@mostajs/replicator-core/sql'
import { PostgresBulkCopy } from './postgres-bulk-copy.js'
import { PostgresCapture } from './postgres-capture.js'
import { postgresFlavor } from './postgres-flavor.js'
import { PostgresReplication } from './postgres-replication.js'
import { DESCRIBE_COLUMNS, toColumn, typeParsers, type DescribedRow } from './postgres-types.js'

function executorOf(client: pg.Pool | pg.PoolClient, inTransaction: boolean): SqlExecutor {
  return {
    inTransaction,
    async execute(sql, params, options) {
      // (text, values) rather than a config object: pg copies config objects on every call.
      const result = options?.driver
        ? await client.query({ ...options.driver, text: sql, values: params })
        : await client.query(sql, params)
      return { rows: result.rows, affected: result.rowCount ?? 0 }
    },
    // on one connection only (a pool would hand the COPY to any of its clients)
    ...(inTransaction
      ? {
          async copyIn(sql: string, data: Buffer) {
            const sink = (client as pg.PoolClient).query(copyFrom(sql))
            sink.end(data)
            await finished(sink)
            return Number(sink.rowCount ?? 0)
          },
        }
      : {}),
  }
}

/**
 * PostgreSQL dialect on node-postgres. Registered as `postgres` and `postgresql`.
 *
 * @example
 * import '@mostajs/replicator-dialect-postgres'
 * const db = createDialect({ dialect: 'postgres', uri: 'postgres://app@127.0.0.1:5432/app' })
 */
export class PostgresDialect extends SqlDialect {
  readonly name = 'postgres'
  private pool: pg.Pool | undefined
  /** Logical decoding (pgoutput) over the streaming replication protocol. */
  readonly capture: PostgresCapture = new PostgresCapture(this)
  /** Streaming replication hooks: status, pg_promote(), read-only, re-pointing. */
  readonly replication: PostgresReplication = new PostgresReplication(this)
  /** COPY text in and out. */
  readonly bulk: PostgresBulkCopy = new PostgresBulkCopy(this)

  constructor(config: DialectConfig) {
    super(config, postgresFlavor)
  }

  protected async openDriver(): Promise<SqlExecutor> {
    const url = new URL(this.config.uri)
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
      throw new Error(`expected a postgres:// or postgresql:// URI, got "${url.protocol}"`)
    }
    const pool = new pg.Pool({
      connectionString: this.config.uri,
      max: this.config.pool?.max ?? 10,
      min: this.config.pool?.min ?? 0,
      idleTimeoutMillis: this.config.pool?.idleTimeoutMs ?? 30_000,
      connectionTimeoutMillis: this.config.connectTimeoutMs ?? 5000,
      application_name: 'mostajs-replicator',
      types: typeParsers,
    })
    // An idle connection dropped by the server: the pool replaces it; the next query reports any real outage.
    pool.on('error', () => undefined)
    this.pool = pool
    return executorOf(pool, false)
  }

  protected async closeDriver(): Promise<void> {
    await this.capture.closeAll()
    const pool = this.pool
    this.pool = undefined
    await pool?.end()
  }

  protected async runTransaction<T>(fn: (executor: SqlExecutor) => Promise<T>): Promise<T> {
    if (!this.pool) throw new Error('not connected')
    const client = await this.pool.connect()
    // A session the server ends while the transaction waits between statements (a fenced
    // master ends its sessions) emits 'error' on the client: without a listener that would end
    // the process. The next statement fails instead, and the client is not reused.
    let ended = false
    const onError = () => {
      ended = true
    }
    client.on('error', onError)
    return runTransactionOn(
      {
        executor: executorOf(client, true),
        release: (broken) => {
          client.off('error', onError)
          client.release(broken || ended)
        },
      },
      'BEGIN',
      fn,
    )
  }

  /** @internal A connection of the pool for a session of its own (COPY); NOT_CONNECTED before connect(). */
  async connectClient(): Promise<pg.PoolClient> {
    this.operations()
    return this.pool!.connect()
  }

  protected async introspect(collection: string, executor: SqlExecutor): Promise<CollectionDescription | null> {
    const { rows } = await executor.execute(DESCRIBE_COLUMNS, [collection])
    if (rows.length === 0) return null
    const described = rows as unknown as DescribedRow[]
    const columns = described.map(toColumn)
    const primaryKey = described
      .filter((row) => Number(row.key_position) > 0)
      .sort((a, b) => Number(a.key_position) - Number(b.key_position))
      .map((row) => row.name)
    return { name: collection, columns, primaryKey }
  }

  protected async listTables(executor: SqlExecutor): Promise<string[]> {
    const { rows } = await executor.execute(
      `SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`,
      [],
    )
    return rows.map((row) => String(row.name))
  }
}

registerDialect({
  name: 'postgres',
  aliases: ['postgresql'],
  label: 'PostgreSQL',
  packageName: '@mostajs/replicator-dialect-postgres',
  sqlFamily: 'postgres',
  replicationFamily: 'postgres',
  oldMasterRejoins: false, // a promoted standby's old primary needs pg_rewind or a new base backup
  create: (config) => new PostgresDialect(config),
})

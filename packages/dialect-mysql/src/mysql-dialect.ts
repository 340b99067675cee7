import mysql from 'mysql2/promise'
import {
  columnDecoder,
  registerDialect,
  ReplicatorError,
  runTransactionOn,
  SqlDialect,
  type CaptureOptions,
  type ChangeBatch,
  type ChangeEvent,
  type CollectionDescription,
  type NativeReplicationStatus,
  type Position,
  type ReadChangesOptions,
  type Row,
  type ColumnDescription,
  type ColumnType,
  type DialectConfig,
  type SqlExecutor,
  type SqlResult,
} from '@mostajs/replicator-core'
import { createMysqlFlavor } from './mysql-flavor.js'
import { BinlogReader, binlogTimestamp, decodeEvent } from './binlog-reader.js'

/** Where captures keep their start position on a MySQL/MariaDB source. */
const CAPTURES_COLLECTION = '_replicator_captures'

/** Session settings of every connection: UTC, and strict mode so bad values fail instead of being truncated. */
const SESSION_SETUP =
  "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"

const PORTABLE_BY_DATA_TYPE: Record<string, ColumnType> = {
  bool: 'boolean',
  boolean: 'boolean',
  tinyint: 'integer',
  smallint: 'integer',
  mediumint: 'integer',
  int: 'integer',
  integer: 'integer',
  year: 'integer',
  bigint: 'bigint',
  decimal: 'decimal',
  numeric: 'decimal',
  float: 'double',
  double: 'double',
  real: 'double',
  char: 'string',
  varchar: 'string',
  tinytext: 'text',
  text: 'text',
  mediumtext: 'text',
  longtext: 'text',
  json: 'json',
  datetime: 'timestamp',
  timestamp: 'timestamp',
  date: 'date',
  binary: 'binary',
  varbinary: 'binary',
  tinyblob: 'binary',
  blob: 'binary',
  mediumblob: 'binary',
  longblob: 'binary',
  uuid: 'uuid',
}

interface DescribedRow {
  name: string
  dataType: string
  columnType: string
  isNullable: string
  length: unknown
  numPrecision: unknown
  numScale: unknown
  extra: string
}

type Queryable = Pick<mysql.Pool, 'query'>

function executorOf(target: Queryable, inTransaction: boolean): SqlExecutor {
  return {
    inTransaction,
    async execute(sql, params): Promise<SqlResult> {
      const [result] = await target.query(sql, params)
      if (Array.isArray(result)) return { rows: result as Record<string, unknown>[], affected: 0 }
      const header = result as mysql.ResultSetHeader
      return { rows: [], affected: header.affectedRows ?? 0, insertId: header.insertId }
    },
  }
}

/** Reads `mysql://user:password@host:port/database?socket=/path` into mysql2 options. */
function connectionOptions(uri: string): mysql.PoolOptions {
  const url = new URL(uri)
  if (url.protocol !== 'mysql:' && url.protocol !== 'mariadb:')
    throw new Error(`expected a mysql:// or mariadb:// URI, got "${url.protocol}"`)
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''))
  if (!database) throw new Error('the URI names no database (mysql://user@host:3306/<database>)')
  const socket = url.searchParams.get('socket')
  return {
    ...(socket
      ? { socketPath: socket }
      : { host: url.hostname || '127.0.0.1', port: url.port ? Number(url.port) : 3306 }),
    user: decodeURIComponent(url.username || 'root'),
    password: decodeURIComponent(url.password),
    database,
  }
}

/**
 * MySQL / MariaDB dialect on mysql2. Registered as `mysql` and `mariadb` (the latter uses
 * MariaDB's UUID type and INSERT … RETURNING).
 *
 * @example
 * import '@mostajs/replicator-dialect-mysql'
 * const db = createDialect({ dialect: 'mariadb', uri: 'mariadb://root@127.0.0.1:3306/app' })
 */
export class MysqlDialect extends SqlDialect {
  readonly name: 'mysql' | 'mariadb'
  private pool: mysql.Pool | undefined
  private serverIsMariaDB = false

  constructor(config: DialectConfig) {
    const family = config.dialect === 'mariadb' ? 'mariadb' : 'mysql'
    super(config, createMysqlFlavor(family))
    this.name = family
  }

  protected async openDriver(): Promise<SqlExecutor> {
    const pool = mysql.createPool({
      ...connectionOptions(this.config.uri),
      connectionLimit: this.config.pool?.max ?? 10,
      maxIdle: this.config.pool?.min ?? 0,
      idleTimeout: this.config.pool?.idleTimeoutMs ?? 30_000,
      connectTimeout: this.config.connectTimeoutMs ?? 5000,
      charset: 'utf8mb4',
      timezone: 'Z',
      supportBigNumbers: true,
      bigNumberStrings: true,
      decimalNumbers: false,
      dateStrings: ['DATE'],
      jsonStrings: true,
      multipleStatements: false,
      // mysql2's own float parser accumulates digits and loses the last ones of 16-17 digit
      // doubles (90.33333333333333 read back as 90.33333333333331); the text is exact.
      typeCast: (field: { type: string; string(): string | null }, next: () => unknown) => {
        if (field.type !== 'DOUBLE' && field.type !== 'FLOAT') return next()
        const text = field.string()
        return text === null ? null : Number(text)
      },
    })
    pool.pool.on('connection', (connection) => {
      connection.query(SESSION_SETUP)
    })
    this.pool = pool
    const [rows] = await pool.query('SELECT VERSION() AS version')
    this.serverIsMariaDB = /mariadb/i.test(String((rows as Array<{ version: string }>)[0]?.version))
    return executorOf(pool, false)
  }

  protected async closeDriver(): Promise<void> {
    const pool = this.pool
    this.pool = undefined
    await pool?.end()
  }

  protected async runTransaction<T>(fn: (executor: SqlExecutor) => Promise<T>): Promise<T> {
    if (!this.pool) throw new Error('not connected')
    const connection = await this.pool.getConnection()
    return runTransactionOn(
      {
        executor: executorOf(connection, true),
        release: (broken) => (broken ? connection.destroy() : connection.release()),
      },
      'START TRANSACTION',
      fn,
    )
  }

  // ---- native replication ----

  async replicationStatus(): Promise<NativeReplicationStatus> {
    const rows = await this.query<Record<string, unknown>>('SHOW SLAVE STATUS')
    const [flags] = await this.query<{ readOnly: number | string }>('SELECT @@global.read_only AS readOnly')
    const readOnly = Number(flags?.readOnly ?? 0) !== 0
    const status = rows[0]
    if (!status) return { role: 'primary', readOnly }
    const seconds = status.Seconds_Behind_Master
    return {
      role: 'replica',
      lagMs: seconds === null || seconds === undefined ? null : Number(seconds) * 1000,
      applying: status.Slave_SQL_Running === 'Yes',
      receiving: status.Slave_IO_Running === 'Yes',
      gtidPosition: status.Gtid_IO_Pos,
      lastError: status.Last_Error || undefined,
      readOnly,
    }
  }

  /** Stops and forgets replication, then accepts writes. */
  async promote(): Promise<void> {
    await this.query('STOP SLAVE')
    await this.query('RESET SLAVE ALL')
    await this.setReadOnly(false)
  }

  /** SET GLOBAL read_only (accounts with SUPER / READ ONLY ADMIN still bypass it). */
  async setReadOnly(readOnly: boolean): Promise<void> {
    await this.query(`SET GLOBAL read_only = ${readOnly ? 1 : 0}`)
  }

  /** Re-points this replica at another primary, continuing from its GTID position. */
  async replicateFrom(primaryUri: string): Promise<void> {
    const url = new URL(primaryUri)
    await this.query('STOP SLAVE')
    await this.query(
      `CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ?, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1`,
      [
        url.hostname,
        Number(url.port || 3306),
        decodeURIComponent(url.username || 'root'),
        decodeURIComponent(url.password),
      ],
    )
    await this.query('START SLAVE')
  }

  // ---- change capture (binary log in ROW format) ----

  private readonly readers = new Map<string, BinlogReader>()

  /** The capture bookkeeping table on the source: where each capture starts (GTID). */
  private async capturesTable(): Promise<void> {
    await this.ensureCollection({
      name: CAPTURES_COLLECTION,
      primaryKey: ['name'],
      columns: [
        { name: 'name', type: 'string' },
        { name: 'start_gtid', type: 'text' },
        { name: 'collections', type: 'json' },
      ],
    })
  }

  private async gtidPosition(): Promise<string> {
    const [row] = await this.query<{ gtid: string }>(
      this.serverIsMariaDB ? 'SELECT @@gtid_binlog_pos AS gtid' : 'SELECT @@gtid_executed AS gtid',
    )
    return String(row?.gtid ?? '')
  }

  async setupCapture(options: CaptureOptions): Promise<void> {
    const [settings] = await this.query<{ logBin: number | string; format: string }>(
      'SELECT @@global.log_bin AS logBin, @@global.binlog_format AS format',
    )
    if (Number(settings?.logBin) !== 1) {
      throw new ReplicatorError(
        'NOT_SUPPORTED',
        `[replicator:${this.name}] The binary log is off on ${this.maskedUri}; change capture needs it: start the server with --log-bin --binlog-format=ROW.`,
      )
    }
    if (String(settings?.format).toUpperCase() !== 'ROW') {
      throw new ReplicatorError(
        'NOT_SUPPORTED',
        `[replicator:${this.name}] binlog_format is ${settings?.format} on ${this.maskedUri}; change capture needs ROW (SET GLOBAL binlog_format = 'ROW', or --binlog-format=ROW).`,
      )
    }
    for (const collection of options.collections) {
      const description = await this.describeCollection(collection)
      if (!description.primaryKey.length)
        throw new ReplicatorError(
          'NOT_SUPPORTED',
          `[replicator:${this.name}] Collection "${collection}" has no primary key; change capture needs one.`,
          { details: { collection } },
        )
    }
    await this.capturesTable()
    const existing = await this.findOne(CAPTURES_COLLECTION, { name: options.name })
    const startGtid = existing ? String(existing.start_gtid) : await this.gtidPosition()
    await this.upsertMany(CAPTURES_COLLECTION, [
      { name: options.name, start_gtid: startGtid, collections: options.collections },
    ])
    const reader = this.readers.get(options.name)
    if (reader && existing && JSON.stringify(existing.collections) !== JSON.stringify(options.collections)) {
      reader.stop() // the collection list changed: read again with the new filter
      this.readers.delete(options.name)
    }
  }

  async dropCapture(name: string): Promise<void> {
    this.readers.get(name)?.stop()
    this.readers.delete(name)
    await this.delete(CAPTURES_COLLECTION, { name }).catch((error) => {
      if (!(ReplicatorError.isInstance(error) && error.code === 'COLLECTION_NOT_FOUND')) throw error
    })
  }

  async readChanges(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    const capture = await this.findOne(CAPTURES_COLLECTION, { name })
    if (!capture)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `[replicator:${this.name}] No capture "${name}" on ${this.maskedUri}; set it up first.`,
      )
    const from = options.after
      ? String((options.after.value as { gtid?: string }).gtid ?? '')
      : String(capture.start_gtid)
    let reader = this.readers.get(name)
    if (!reader || (options.after === null && reader.startGtid !== from)) {
      reader?.stop()
      const url = new URL(this.config.uri)
      reader = new BinlogReader(
        {
          host: url.hostname || '127.0.0.1',
          port: Number(url.port || 3306),
          user: decodeURIComponent(url.username || 'root'),
          password: decodeURIComponent(url.password),
        },
        decodeURIComponent(url.pathname.slice(1)),
        capture.collections as string[],
        from,
        (collection) => this.describeCollection(collection),
        (row, description) => this.decodeBinlogRow(row, description),
        this.name,
        this.config.capture,
      )
      this.readers.set(name, reader)
      await reader.start()
    }
    const [status] = await this.query<{ File: string; Position: number }>('SHOW MASTER STATUS')
    if (status) await reader.catchUp({ file: status.File, pos: Number(status.Position) }, 3000)
    const { events, position, spill } = reader.take(Math.max(1, options.maxEvents), options.after ? from : null)
    if (spill) {
      // A transaction too large to hold: read back from its spill file in parts.
      const value = { ...position! }
      const nextPart = async (): Promise<ChangeEvent[] | null> => {
        const records = spill.read(reader.spillAfter)
        if (!records.length) return null
        return records.map((record) => {
          const event = decodeEvent(record)
          event.source.position = { dialect: this.name, value: { ...value } }
          return event
        })
      }
      const first = await nextPart()
      return first
        ? { events: first, position: { dialect: this.name, value }, nextPart }
        : { events: [], position: { dialect: this.name, value } }
    }
    return { events, position: position ? { dialect: this.name, value: { ...position } } : null }
  }

  /** A row image from the binlog → portable values, as a read of the table gives them. */
  private decodeBinlogRow(row: Row, description: CollectionDescription): Row {
    const decoded: Row = {}
    for (const column of description.columns) {
      let value = row[column.name]
      if (value === undefined) continue
      if (value !== null) {
        if (column.type === 'timestamp') value = binlogTimestamp(value)
        const decode = columnDecoder(this.flavor, column)
        if (decode) value = decode(value)
      }
      decoded[column.name] = value
    }
    return decoded
  }

  async confirmChanges(name: string, position: Position): Promise<void> {
    this.readers.get(name)?.confirm(String((position.value as { gtid?: string }).gtid ?? ''))
  }

  async currentPosition(): Promise<Position> {
    const [status] = await this.query<{ File: string; Position: number }>('SHOW MASTER STATUS')
    return {
      dialect: this.name,
      value: { gtid: await this.gtidPosition(), file: status?.File ?? '', pos: Number(status?.Position ?? 0) },
    }
  }

  override async close(): Promise<void> {
    for (const reader of this.readers.values()) reader.stop()
    this.readers.clear()
    await super.close()
  }

  protected async introspect(collection: string, executor: SqlExecutor): Promise<CollectionDescription | null> {
    const { rows } = await executor.execute(
      `SELECT COLUMN_NAME AS name, DATA_TYPE AS dataType, COLUMN_TYPE AS columnType, IS_NULLABLE AS isNullable,
              CHARACTER_MAXIMUM_LENGTH AS length, NUMERIC_PRECISION AS numPrecision, NUMERIC_SCALE AS numScale, EXTRA AS extra
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
      [collection],
    )
    if (rows.length === 0) return null
    const keys = await executor.execute(
      `SELECT COLUMN_NAME AS name FROM information_schema.STATISTICS
       WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`,
      [collection],
    )
    const jsonColumns = this.serverIsMariaDB ? await this.mariadbJsonColumns(collection, executor) : new Set<string>()
    return {
      name: collection,
      columns: (rows as unknown as DescribedRow[]).map((row) => toColumn(row, jsonColumns)),
      primaryKey: keys.rows.map((row) => String(row.name)),
    }
  }

  /** MariaDB stores JSON as LONGTEXT with a json_valid() check; find those columns. */
  private async mariadbJsonColumns(collection: string, executor: SqlExecutor): Promise<Set<string>> {
    const { rows } = await executor.execute(
      `SELECT CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = ?`,
      [collection],
    )
    const columns = new Set<string>()
    for (const row of rows) {
      const match = /^json_valid\(`((?:[^`]|``)+)`\)$/i.exec(String(row.clause).trim())
      if (match) columns.add(match[1]!.replaceAll('``', '`'))
    }
    return columns
  }

  protected async listTables(executor: SqlExecutor): Promise<string[]> {
    const { rows } = await executor.execute(
      `SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`,
      [],
    )
    return rows.map((row) => String(row.name))
  }
}

function toColumn(row: DescribedRow, jsonColumns: Set<string>): ColumnDescription {
  const dataType = String(row.dataType).toLowerCase()
  const columnType = String(row.columnType).toLowerCase()
  let type: ColumnType = PORTABLE_BY_DATA_TYPE[dataType] ?? 'unknown'
  if (dataType === 'tinyint' && columnType.startsWith('tinyint(1)')) type = 'boolean'
  if (jsonColumns.has(row.name)) type = 'json'
  const column: ColumnDescription = {
    name: row.name,
    type,
    nativeType: String(row.columnType),
    nullable: row.isNullable === 'YES',
  }
  if (String(row.extra).includes('auto_increment')) column.autoIncrement = true
  if (type === 'string' && row.length !== null) column.length = Number(row.length)
  if (type === 'decimal') {
    column.precision = Number(row.numPrecision)
    column.scale = Number(row.numScale)
  }
  return column
}

registerDialect('mysql', (config) => new MysqlDialect(config))
registerDialect('mariadb', (config) => new MysqlDialect(config))

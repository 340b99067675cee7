import mysql from 'mysql2/promise'
import {
  registerDialect,
  type CollectionDescription,
  type ColumnDescription,
  type ColumnType,
  type DialectConfig,
} from '@mostajs/replicator-core'
import { runTransactionOn, SqlDialect, type SqlExecutor, type SqlResult } from '@mostajs/replicator-core/sql'
import { createMysqlFlavor } from './mysql-flavor.js'
import { MysqlCapture } from './mysql-capture.js'
import { MysqlReplication } from './mysql-replication.js'

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
  /** @internal Whether the server is MariaDB (its GTIDs and replication statements differ). */
  serverIsMariaDB = false
  /** The binary log in ROW format, from a GTID position. */
  readonly capture: MysqlCapture = new MysqlCapture(this)
  /** Replication hooks: status, promotion, read-only, re-pointing. */
  readonly replication: MysqlReplication = new MysqlReplication(this)

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

  // ---- change capture (binary log in ROW format) ----

  override async close(): Promise<void> {
    this.capture.closeAll()
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

for (const [name, label] of [
  ['mysql', 'MySQL'],
  ['mariadb', 'MariaDB'],
] as const)
  registerDialect({
    name,
    label,
    packageName: '@mostajs/replicator-dialect-mysql',
    sqlFamily: 'mysql',
    replicationFamily: 'mysql', // MariaDB and MySQL replicate each other
    oldMasterRejoins: true, // with GTID, the old master replicates from the new one
    create: (config) => new MysqlDialect(config),
  })

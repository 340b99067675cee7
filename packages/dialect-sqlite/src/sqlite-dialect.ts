import Database from 'better-sqlite3'
import {
  registerDialect,
  type CollectionDescription,
  type ColumnDescription,
  type ColumnType,
  type DialectConfig,
} from '@mostajs/replicator-core'
import { SqlDialect, type SqlExecuteOptions, type SqlExecutor, type SqlResult } from '@mostajs/replicator-core/sql'
import { SqliteCapture } from './sqlite-capture.js'
import { sqliteFlavor } from './sqlite-flavor.js'

const PORTABLE_BY_DECLARED_TYPE: Record<string, ColumnType> = {
  BOOLEAN: 'boolean',
  BOOL: 'boolean',
  INTEGER: 'integer',
  INT: 'integer',
  SMALLINT: 'integer',
  TINYINT: 'integer',
  MEDIUMINT: 'integer',
  INT2: 'integer',
  INT4: 'integer',
  BIGINT: 'bigint',
  INT8: 'bigint',
  'UNSIGNED BIG INT': 'bigint',
  DECIMAL_TEXT: 'decimal',
  DECIMAL: 'decimal',
  NUMERIC: 'decimal',
  REAL: 'double',
  DOUBLE: 'double',
  'DOUBLE PRECISION': 'double',
  FLOAT: 'double',
  VARCHAR: 'string',
  CHAR: 'string',
  CHARACTER: 'string',
  NVARCHAR: 'string',
  NCHAR: 'string',
  'VARYING CHARACTER': 'string',
  'NATIVE CHARACTER': 'string',
  TEXT: 'text',
  CLOB: 'text',
  JSON: 'json',
  JSONB: 'json',
  TIMESTAMP: 'timestamp',
  DATETIME: 'timestamp',
  TIMESTAMPTZ: 'timestamp',
  DATE: 'date',
  BLOB: 'binary',
  BINARY: 'binary',
  VARBINARY: 'binary',
  BYTEA: 'binary',
  UUID: 'uuid',
}

/** A SQL string literal. */
export function sqlString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`
}

/** Prepared statements kept per database. */
const STATEMENT_CACHE_SIZE = 500

/** `sqlite:./x.db`, `sqlite:///abs/x.db`, `file:x.db`, `:memory:` or a plain path → a path for better-sqlite3. */
export function sqlitePathOf(uri: string): string {
  const trimmed = uri.trim()
  if (trimmed === ':memory:' || trimmed === 'sqlite::memory:' || trimmed === 'sqlite://:memory:') return ':memory:'
  const match = /^(?:sqlite|file):(?:\/\/)?(.*)$/i.exec(trimmed)
  const path = match ? match[1]! : trimmed
  if (path === '') throw new Error('the URI names no database file')
  return decodeURIComponent(path.split('?')[0]!)
}

/**
 * SQLite dialect on better-sqlite3. Registered as `sqlite`. One connection per dialect;
 * statements are serialised, and a transaction holds the connection until it ends (inside
 * `transaction(fn)` use the `tx` it passes, not the dialect).
 *
 * @example
 * import '@mostajs/replicator-dialect-sqlite'
 * const db = createDialect({ dialect: 'sqlite', uri: './data/app.db' })
 */
export class SqliteDialect extends SqlDialect {
  readonly name = 'sqlite'
  /** Triggers writing each change to a changelog table, in the same transaction. */
  readonly capture: SqliteCapture = new SqliteCapture(this)
  private database: Database.Database | undefined
  private readonly prepared = new Map<string, Database.Statement>()
  private queue: Promise<unknown> = Promise.resolve()

  constructor(config: DialectConfig) {
    super(config, sqliteFlavor)
  }

  /** Runs `fn` once every earlier statement and transaction has finished. */
  private exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => undefined)
    return run
  }

  private runNow(sql: string, params: unknown[], options?: SqlExecuteOptions): SqlResult {
    const database = this.database
    if (!database) throw new Error('the database is closed')
    let statement = this.prepared.get(sql)
    if (!statement) {
      statement = database.prepare(sql)
      if (this.prepared.size >= STATEMENT_CACHE_SIZE) this.prepared.clear()
      this.prepared.set(sql, statement)
    }
    if (statement.reader) {
      // 64-bit exact integers (as bigint) only where a column needs them: plain numbers are cheaper.
      statement.safeIntegers(options?.exactIntegers ?? true)
      return { rows: statement.all(params) as Record<string, unknown>[], affected: 0 }
    }
    const info = statement.run(params)
    return { rows: [], affected: info.changes, insertId: info.lastInsertRowid }
  }

  protected async openDriver(): Promise<SqlExecutor> {
    const path = sqlitePathOf(this.config.uri)
    const database = new Database(path, { timeout: this.config.connectTimeoutMs ?? 5000 })
    database.defaultSafeIntegers(true) // 64-bit integers come back exact, as bigint
    if (path !== ':memory:') database.pragma('journal_mode = WAL')
    database.pragma('synchronous = NORMAL')
    database.pragma('foreign_keys = ON')
    this.database = database
    return {
      inTransaction: false,
      execute: (sql, params, options) => this.exclusive(() => this.runNow(sql, params, options)),
    }
  }

  protected async closeDriver(): Promise<void> {
    const database = this.database
    this.database = undefined
    this.prepared.clear()
    await this.queue
    database?.close()
  }

  protected runTransaction<T>(fn: (executor: SqlExecutor) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      this.runNow('BEGIN IMMEDIATE', [])
      try {
        const result = await fn({
          inTransaction: true,
          execute: async (sql, params, options) => this.runNow(sql, params, options),
        })
        this.runNow('COMMIT', [])
        return result
      } catch (error) {
        if (this.database?.inTransaction) this.runNow('ROLLBACK', [])
        throw error
      }
    })
  }

  /**
   * Catalogue reads made while a transaction is open on the connection run at once instead of
   * queueing behind it: a lookup made through the dialect inside a transaction would otherwise
   * wait for that transaction, which waits for it. They only read the schema, so running them
   * between its statements is harmless. Otherwise they queue like any statement.
   */
  protected override catalogueExecutor(): SqlExecutor {
    this.operations() // NOT_CONNECTED before connect() / after close()
    return {
      inTransaction: false,
      execute: (sql, params, options) =>
        this.database?.inTransaction
          ? Promise.resolve().then(() => this.runNow(sql, params, options))
          : this.exclusive(() => this.runNow(sql, params, options)),
    }
  }

  // ---- change capture (triggers + changelog) ----

  protected async introspect(collection: string, executor: SqlExecutor): Promise<CollectionDescription | null> {
    const exists = await executor.execute(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ?`, [
      collection,
    ])
    if (exists.rows.length === 0) return null
    const { rows } = await executor.execute(
      `SELECT name, type, "notnull" AS required, pk FROM pragma_table_info(?) ORDER BY cid`,
      [collection],
    )
    const keyRows = rows.filter((row) => Number(row.pk) > 0).sort((a, b) => Number(a.pk) - Number(b.pk))
    const columns = rows.map((row) => toColumn(row, keyRows.length === 1 && keyRows[0]!.name === row.name))
    return { name: collection, columns, primaryKey: keyRows.map((row) => String(row.name)) }
  }

  protected async listTables(executor: SqlExecutor): Promise<string[]> {
    const { rows } = await executor.execute(
      `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`,
      [],
    )
    return rows.map((row) => String(row.name))
  }
}

function toColumn(row: Record<string, unknown>, soleKey: boolean): ColumnDescription {
  const declared = String(row.type ?? '').trim()
  const upper = declared.toUpperCase()
  const base = upper.replace(/\s*\(.*$/, '').trim()
  const type = PORTABLE_BY_DECLARED_TYPE[base] ?? 'unknown'
  // A column whose declared type is exactly INTEGER and is the sole key is the rowid: it can be NULL-free and autogenerated.
  const column: ColumnDescription = {
    name: String(row.name),
    type,
    nativeType: declared,
    nullable: Number(row.required) === 0 && !(soleKey && upper === 'INTEGER'),
  }
  if (soleKey && upper === 'INTEGER') column.autoIncrement = true
  const sizes = /\((\d+)(?:\s*,\s*(\d+))?\)/.exec(declared)
  if (sizes && type === 'string') column.length = Number(sizes[1])
  if (sizes && type === 'decimal') {
    column.precision = Number(sizes[1])
    column.scale = sizes[2] === undefined ? 0 : Number(sizes[2])
  }
  return column
}

registerDialect({
  name: 'sqlite',
  aliases: ['sqlite3'],
  label: 'SQLite',
  packageName: '@mostajs/replicator-dialect-sqlite',
  sqlFamily: 'sqlite',
  replicationFamily: null, // no native replication: its slaves are managed
  oldMasterRejoins: false,
  create: (config) => new SqliteDialect(config),
})

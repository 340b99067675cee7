import Database from 'better-sqlite3'
import {
  columnDecoder,
  keyOfRow,
  registerDialect,
  ReplicatorError,
  SqlDialect,
  type CaptureBacklog,
  type CaptureOptions,
  type ChangeBatch,
  type ChangeEvent,
  type CollectionDescription,
  type Position,
  type ReadChangesOptions,
  type Row,
  type ColumnDescription,
  type ColumnType,
  type DialectConfig,
  type SqlExecuteOptions,
  type SqlExecutor,
  type SqlResult,
} from '@mostajs/replicator-core'
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
function sqlString(text: string): string {
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

  // ---- change capture (triggers + changelog) ----

  private changelogOf(name: string): string {
    return `_replicator_changelog_${name}`
  }

  private triggerNames(name: string, collection: string): string[] {
    return ['c', 'u', 'd'].map((op) => `_replicator_${name}_${collection}_${op}`)
  }

  /** JSON of a row's columns as written by a trigger (`NEW`/`OLD`): exact for 64-bit integers and blobs. */
  private rowJson(description: CollectionDescription, alias: 'NEW' | 'OLD', columns: string[]): string {
    const q = (identifier: string) => this.flavor.quoteIdentifier(identifier)
    const parts = columns.map((name) => {
      const column = description.columns.find((candidate) => candidate.name === name)!
      const reference = `${alias}.${q(name)}`
      // hex(NULL) is '' in SQLite: keep NULL a NULL
      const value =
        column.type === 'binary'
          ? `CASE WHEN ${reference} IS NULL THEN NULL ELSE hex(${reference}) END`
          : column.type === 'bigint' || column.type === 'unknown'
            ? `CASE WHEN typeof(${reference}) = 'blob' THEN hex(${reference}) ELSE CAST(${reference} AS TEXT) END`
            : reference
      return `${sqlString(name)}, ${value}`
    })
    return `json_object(${parts.join(', ')})`
  }

  async setupCapture(options: CaptureOptions): Promise<void> {
    const q = (identifier: string) => this.flavor.quoteIdentifier(identifier)
    const log = q(this.changelogOf(options.name))
    const statements = [
      `CREATE TABLE IF NOT EXISTS ${log} (id INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, collection TEXT NOT NULL, key TEXT NOT NULL, after TEXT, at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))`,
    ]
    for (const collection of options.collections) {
      const description = await this.describeCollection(collection)
      if (!description.primaryKey.length) {
        throw new ReplicatorError(
          'NOT_SUPPORTED',
          `[replicator:sqlite] Collection "${collection}" has no primary key; change capture needs one.`,
          { details: { collection } },
        )
      }
      const all = description.columns.map((column) => column.name)
      const [insert, update, remove] = this.triggerNames(options.name, collection).map(q)
      const table = q(collection)
      const name = sqlString(collection)
      const keyChanged = description.primaryKey.map((key) => `OLD.${q(key)} IS NOT NEW.${q(key)}`).join(' OR ')
      // Each trigger writes in the same transaction as the change: nothing committed is missed.
      statements.push(
        `CREATE TRIGGER IF NOT EXISTS ${insert} AFTER INSERT ON ${table} BEGIN INSERT INTO ${log} (op, collection, key, after) VALUES ('c', ${name}, ${this.rowJson(description, 'NEW', description.primaryKey)}, ${this.rowJson(description, 'NEW', all)}); END`,
        `CREATE TRIGGER IF NOT EXISTS ${update} AFTER UPDATE ON ${table} BEGIN
           INSERT INTO ${log} (op, collection, key, after) SELECT 'd', ${name}, ${this.rowJson(description, 'OLD', description.primaryKey)}, NULL WHERE ${keyChanged};
           INSERT INTO ${log} (op, collection, key, after) VALUES ('u', ${name}, ${this.rowJson(description, 'NEW', description.primaryKey)}, ${this.rowJson(description, 'NEW', all)});
         END`,
        `CREATE TRIGGER IF NOT EXISTS ${remove} AFTER DELETE ON ${table} BEGIN INSERT INTO ${log} (op, collection, key, after) VALUES ('d', ${name}, ${this.rowJson(description, 'OLD', description.primaryKey)}, NULL); END`,
      )
    }
    await this.transaction(async (tx) => {
      for (const statement of statements) await tx.query(statement)
    })
  }

  async dropCapture(name: string): Promise<void> {
    const q = (identifier: string) => this.flavor.quoteIdentifier(identifier)
    const prefix = `_replicator_${name}_`
    const triggers = await this.query<{ name: string }>(
      `SELECT name FROM sqlite_schema WHERE type = 'trigger' AND substr(name, 1, ?) = ?`,
      [prefix.length, prefix],
    )
    await this.transaction(async (tx) => {
      for (const trigger of triggers) await tx.query(`DROP TRIGGER IF EXISTS ${q(trigger.name)}`)
      await tx.query(`DROP TABLE IF EXISTS ${q(this.changelogOf(name))}`)
    })
    this.invalidateCatalog()
  }

  async readChanges(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    const after = options.after ? Number(options.after.value) : 0
    const rows = await this.query<{
      id: bigint
      op: string
      collection: string
      key: string
      after: string | null
      at: string
    }>(
      `SELECT id, op, collection, key, after, at FROM ${this.flavor.quoteIdentifier(this.changelogOf(name))} WHERE id > ? ORDER BY id LIMIT ?`,
      [after, Math.max(1, options.maxEvents)],
    )
    const events: ChangeEvent[] = []
    for (const row of rows) {
      const description = await this.describeCollection(row.collection)
      const keyRow = this.changelogRow(description, row.key)
      const afterRow = row.after === null ? null : this.changelogRow(description, row.after)
      const position = { dialect: 'sqlite', value: Number(row.id) }
      events.push({
        op: row.op as ChangeEvent['op'],
        collection: row.collection,
        key: keyOfRow(keyRow, description.primaryKey),
        before: null,
        after: afterRow,
        source: { dialect: 'sqlite', database: sqlitePathOf(this.config.uri), position, ts: Date.parse(row.at) },
      })
    }
    const last = rows[rows.length - 1]
    return { events, position: last ? { dialect: 'sqlite', value: Number(last.id) } : null }
  }

  /** A row from the changelog JSON, turned into portable values like a read of the table. */
  private changelogRow(description: CollectionDescription, json: string): Row {
    const row = JSON.parse(json) as Row
    for (const column of description.columns) {
      const value = row[column.name]
      if (value === null || value === undefined) continue
      if (column.type === 'binary') row[column.name] = Buffer.from(String(value), 'hex')
      else {
        const decode = columnDecoder(this.flavor, column)
        if (decode) row[column.name] = decode(value)
      }
    }
    return row
  }

  async captureBacklog(name: string): Promise<CaptureBacklog | null> {
    const exists = await this.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [
      this.changelogOf(name),
    ])
    if (!exists.length) return null
    const [row] = await this.query<{ pending: number }>(
      `SELECT count(*) AS pending FROM ${this.flavor.quoteIdentifier(this.changelogOf(name))}`,
    )
    return { pendingEvents: Number(row?.pending ?? 0) }
  }

  async confirmChanges(name: string, position: Position): Promise<void> {
    await this.query(`DELETE FROM ${this.flavor.quoteIdentifier(this.changelogOf(name))} WHERE id <= ?`, [
      Number(position.value),
    ])
  }

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

registerDialect('sqlite', (config) => new SqliteDialect(config), ['sqlite3'])

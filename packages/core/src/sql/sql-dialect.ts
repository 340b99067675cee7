import {
  DEFAULT_CAPABILITIES,
  type Dialect,
  type DialectCapabilities,
  type DialectConfig,
  type DialectOperations,
  type ExecuteOptions,
  type ExecuteResult,
  type HeartbeatStore,
  type ScanOptions,
  type ScanPage,
} from '../dialect.js'
import type { NativeRow } from '../native-row.js'
import { ReplicatorError } from '../errors.js'
import type { Filter, FindOptions, UpdateChanges } from '../filter.js'
import { maskUri } from '../mask-uri.js'
import { withTimeout } from '../with-timeout.js'
import {
  toCollectionSchema,
  type CollectionDescription,
  type CollectionSchema,
  type ColumnDescription,
  type ColumnSchema,
  type EntitySchema,
  type Row,
  type RowKey,
} from '../schema.js'
import type { SqlExecutor, SqlFlavor } from './sql-flavor.js'
import { driverDetails, errorMessage, KIND_TO_CODE, redactPassword } from './driver-errors.js'
import { SqlHeartbeat } from './sql-heartbeat.js'
import { SqlOperations } from './sql-operations.js'
import { placeholderTuples } from './sql-row-helpers.js'

/** @internal SQL of a point read compiled for one filter shape. */
export interface CachedStatement {
  sql: string
  columns: ColumnDescription[]
}

/** Upper bound of cached statement texts per dialect. */
const STATEMENT_CACHE_SIZE = 256

/**
 * Base of the SQL dialects: implements the whole {@link Dialect} contract from a
 * {@link SqlFlavor} (how to spell SQL and convert values) and a small driver adapter that
 * each dialect package provides (open/close a pool, run a transaction, introspect a table).
 */
export abstract class SqlDialect implements Dialect {
  abstract readonly name: string
  readonly maskedUri: string
  readonly capabilities: DialectCapabilities
  /** @internal The connection settings (the URI holds the password: never log it). */
  readonly config: DialectConfig
  private poolOperations: SqlOperations | undefined
  private readonly catalog = new Map<string, CollectionDescription>()
  private readonly columnNames = new WeakMap<CollectionDescription, Set<string>>()
  private readonly shapes = new WeakMap<CollectionDescription, Map<string, CachedStatement>>()
  private readonly exactIntegers = new WeakMap<CollectionDescription, boolean>()
  private readonly statementTexts = new Map<string, string>()

  constructor(
    config: DialectConfig,
    readonly flavor: SqlFlavor,
    capabilities: Partial<DialectCapabilities> = {},
  ) {
    this.config = config
    this.maskedUri = maskUri(config.uri)
    this.capabilities = {
      ...DEFAULT_CAPABILITIES,
      sql: true,
      supportsReturning: flavor.supportsReturning,
      maxParameters: flavor.maxParameters,
      ...capabilities,
    }
  }

  // ---- driver adapter, provided by each dialect package ----

  /** Opens the driver (pool or file) and returns an executor on it. */
  protected abstract openDriver(): Promise<SqlExecutor>
  /** Closes the driver; must not throw when it was never opened. */
  protected abstract closeDriver(): Promise<void>
  /** Runs `fn` on one connection inside BEGIN … COMMIT, rolling back when it throws. */
  protected abstract runTransaction<T>(fn: (executor: SqlExecutor) => Promise<T>): Promise<T>
  /** Describes a table, or null when it does not exist. */
  protected abstract introspect(collection: string, executor: SqlExecutor): Promise<CollectionDescription | null>
  /** Lists user tables. */
  protected abstract listTables(executor: SqlExecutor): Promise<string[]>

  // ---- lifecycle ----

  async connect(): Promise<void> {
    if (this.poolOperations) return
    const timeoutMs = this.config.connectTimeoutMs ?? 5000
    try {
      const executor = await withTimeout(
        (async () => {
          const opened = await this.openDriver()
          await opened.execute('SELECT 1', [])
          return opened
        })(),
        timeoutMs,
      )
      this.poolOperations = new SqlOperations(this, executor)
    } catch (error) {
      await this.closeDriver().catch(() => undefined)
      throw new ReplicatorError(
        'CONNECTION_FAILED',
        `[replicator:${this.name}] Cannot connect to ${this.maskedUri}: ${this.redact(errorMessage(error))}. Check that the server is running and the URI (host, port, user, password, database) is right.`,
        { cause: error, details: { dialect: this.name, uri: this.maskedUri } },
      )
    }
  }

  async close(): Promise<void> {
    this.poolOperations = undefined
    this.catalog.clear()
    ;(this.heartbeat as SqlHeartbeat).reset()
    await this.closeDriver()
  }

  async ping(): Promise<number> {
    const started = performance.now()
    await this.operations().run('SELECT 1', [])
    return performance.now() - started
  }

  /** The pool-bound operations; NOT_CONNECTED before connect(). */
  protected operations(): SqlOperations {
    if (!this.poolOperations) {
      throw new ReplicatorError(
        'NOT_CONNECTED',
        `[replicator:${this.name}] ${this.maskedUri} is not connected; call connect() first.`,
        { details: { dialect: this.name, uri: this.maskedUri } },
      )
    }
    return this.poolOperations
  }

  /** See `Dialect.nativeTextFormat` (from the flavor). */
  get nativeTextFormat(): string | undefined {
    return this.flavor.nativeTextFormat
  }

  // ---- CRUD, delegated to the pool-bound operations ----

  async find(collection: string, filter?: Filter, options?: FindOptions): Promise<Row[]> {
    return this.operations().find(collection, filter, options)
  }
  async findOne(collection: string, filter?: Filter, options?: Omit<FindOptions, 'limit'>): Promise<Row | null> {
    return this.operations().findOne(collection, filter, options)
  }
  async count(collection: string, filter?: Filter): Promise<number> {
    return this.operations().count(collection, filter)
  }
  async insert(collection: string, row: Row): Promise<Row> {
    return this.operations().insert(collection, row)
  }
  async update(collection: string, filter: Filter, changes: UpdateChanges): Promise<number> {
    return this.operations().update(collection, filter, changes)
  }
  async delete(collection: string, filter: Filter): Promise<number> {
    return this.operations().delete(collection, filter)
  }
  async upsertMany(collection: string, rows: Row[]): Promise<number> {
    return this.operations().upsertMany(collection, rows)
  }
  async upsertNative(collection: string, rows: NativeRow[], options?: { fresh?: boolean }): Promise<number> {
    return this.operations().upsertNative(collection, rows, options)
  }
  async deleteMany(collection: string, keys: RowKey[]): Promise<number> {
    return this.operations().deleteMany(collection, keys)
  }
  async insertMany(collection: string, rows: Row[]): Promise<number> {
    return this.operations().insertMany(collection, rows)
  }
  async deleteOne(collection: string, row: Row): Promise<number> {
    return this.operations().deleteOne(collection, row)
  }
  async replaceOne(collection: string, before: Row, after: Row): Promise<number> {
    return this.operations().replaceOne(collection, before, after)
  }
  async scan(collection: string, options?: ScanOptions): Promise<ScanPage> {
    return this.operations().scan(collection, options)
  }
  async query<T = Row>(sql: string, params?: unknown[]): Promise<T[]> {
    return this.operations().query<T>(sql, params)
  }
  async execute(sql: string, params?: unknown[], options?: ExecuteOptions): Promise<ExecuteResult> {
    return this.operations().execute(sql, params, options)
  }

  async transaction<T>(fn: (tx: DialectOperations) => Promise<T>): Promise<T> {
    this.operations()
    return this.transactionOperations(fn)
  }

  $transaction<T>(fn: (tx: DialectOperations) => Promise<T>): Promise<T> {
    return this.transaction(fn)
  }

  /** @internal Runs `fn` with operations bound to a new transaction. */
  async transactionOperations<T>(fn: (operations: SqlOperations) => Promise<T>): Promise<T> {
    try {
      return await this.runTransaction((executor) => fn(new SqlOperations(this, executor)))
    } catch (error) {
      throw this.toReplicatorError(error)
    }
  }

  // ---- introspection ----

  async listCollections(): Promise<string[]> {
    const executor = this.catalogueExecutor()
    try {
      return await this.listTables(executor)
    } catch (error) {
      throw this.toReplicatorError(error)
    }
  }

  async describeCollection(collection: string): Promise<CollectionDescription> {
    return this.describeWith(collection, this.catalogueExecutor())
  }

  /** Where catalogue reads run (NOT_CONNECTED before connect()); a dialect with one serialised connection overrides it. */
  protected catalogueExecutor(): SqlExecutor {
    return operationsExecutor(this.operations())
  }

  /**
   * @internal Cached description; re-read once when `columns` names a column the cached one
   * lacks (the table may have been altered since).
   */
  async describeWith(
    collection: string,
    executor: SqlExecutor,
    columns?: Iterable<string>,
  ): Promise<CollectionDescription> {
    const cached = this.catalog.get(collection)
    if (cached) {
      if (!columns) return cached
      let known = this.columnNames.get(cached)
      if (!known) this.columnNames.set(cached, (known = new Set(cached.columns.map((column) => column.name))))
      let complete = true
      for (const name of columns)
        if (!known.has(name)) {
          complete = false
          break
        }
      if (complete) return cached
    }
    this.flavor.quoteIdentifier(collection) // rejects names the database cannot hold
    let description: CollectionDescription | null
    try {
      description = await this.introspect(collection, executor)
    } catch (error) {
      throw this.toReplicatorError(error, collection)
    }
    if (!description) {
      this.catalog.delete(collection)
      throw new ReplicatorError(
        'COLLECTION_NOT_FOUND',
        `[replicator:${this.name}] Collection "${collection}" does not exist in ${this.maskedUri}. Create it (ensureCollection) or check the name.`,
        {
          details: { dialect: this.name, collection, uri: this.maskedUri },
        },
      )
    }
    this.catalog.set(collection, description)
    return description
  }

  async ensureCollection(schema: CollectionSchema | EntitySchema): Promise<CollectionDescription> {
    const table = toCollectionSchema(schema)
    const keys = new Set(table.primaryKey)
    const definitions = table.columns.map((column) => this.flavor.columnDefinition(column, keys.has(column.name)))
    if (table.primaryKey.length)
      definitions.push(`PRIMARY KEY (${table.primaryKey.map((name) => this.flavor.quoteIdentifier(name)).join(', ')})`)
    const sql = `CREATE TABLE IF NOT EXISTS ${this.flavor.quoteIdentifier(table.name)} (${definitions.join(', ')})${this.flavor.createTableSuffix}`
    await this.operations().run(sql, [], table.name)
    this.catalog.delete(table.name)
    return this.describeCollection(table.name)
  }

  async ensureColumns(collection: string, columns: ColumnSchema[]): Promise<CollectionDescription> {
    this.catalog.delete(collection)
    const present = new Set((await this.describeCollection(collection)).columns.map((column) => column.name))
    const table = this.flavor.quoteIdentifier(collection)
    for (const column of columns) {
      if (present.has(column.name)) continue
      const definition = this.flavor.columnDefinition({ ...column, nullable: true }, false)
      await this.operations().run(`ALTER TABLE ${table} ADD COLUMN ${definition}`, [], collection)
    }
    this.catalog.delete(collection)
    return this.describeCollection(collection)
  }

  /** The heartbeat row, in a table of this database (every SQL database has one). */
  readonly heartbeat: HeartbeatStore = new SqlHeartbeat(this)

  /** Forgets cached table descriptions (all, or one collection). */
  invalidateCatalog(collection?: string): void {
    if (collection === undefined) this.catalog.clear()
    else this.catalog.delete(collection)
  }

  // ---- shared helpers used by SqlOperations ----

  /** @internal A statement compiled once per collection description and filter shape. */
  cachedStatement(description: CollectionDescription, shape: string, compile: () => CachedStatement): CachedStatement {
    let perShape = this.shapes.get(description)
    if (!perShape) this.shapes.set(description, (perShape = new Map()))
    let statement = perShape.get(shape)
    if (!statement) {
      if (perShape.size >= STATEMENT_CACHE_SIZE) perShape.clear()
      perShape.set(shape, (statement = compile()))
    }
    return statement
  }

  /** @internal True when a column of the collection needs exact 64-bit integers from the driver. */
  needsExactIntegers(description: CollectionDescription): boolean {
    let exact = this.exactIntegers.get(description)
    if (exact === undefined) this.exactIntegers.set(description, (exact = this.computeExactIntegers(description)))
    return exact
  }

  private computeExactIntegers(description: CollectionDescription): boolean {
    const needs = this.flavor.needsExactIntegers
    return needs ? description.columns.some((column) => needs(column)) : false
  }

  /** @internal The cached text of an upsert of `rowCount` rows with these columns. */
  upsertStatement(collection: string, description: CollectionDescription, columns: string[], rowCount: number): string {
    return this.cachedText(`${collection}\u0000${columns.join('\u0000')}\u0000${rowCount}`, (q) =>
      this.flavor.upsertSql(
        q(collection),
        columns.map(q),
        description.primaryKey.map(q),
        placeholderTuples(this.flavor, rowCount, columns.length),
      ),
    )
  }

  /** @internal The cached text of an array-parameter upsert (flavors with bulkUpsertSql). */
  bulkUpsertStatement(collection: string, description: CollectionDescription, columns: string[]): string {
    return this.cachedText(`bulk\u0000${collection}\u0000${columns.join('\u0000')}`, (q) => {
      const types = columns.map((name) => description.columns.find((column) => column.name === name)!.nativeType)
      return this.flavor.bulkUpsertSql!(q(collection), columns.map(q), description.primaryKey.map(q), types)
    })
  }

  private cachedText(cacheKey: string, make: (quote: (name: string) => string) => string): string {
    let sql = this.statementTexts.get(cacheKey)
    if (sql) return sql
    sql = make((name) => this.flavor.quoteIdentifier(name))
    if (this.statementTexts.size >= STATEMENT_CACHE_SIZE) this.statementTexts.clear()
    this.statementTexts.set(cacheKey, sql)
    return sql
  }

  /** @internal Turns a driver error into a ReplicatorError with a masked, prefixed message. */
  toReplicatorError(error: unknown, collection?: string): ReplicatorError {
    if (ReplicatorError.isInstance(error)) return error
    const kind = this.flavor.classifyError(error)
    if (kind === 'missing-table' && collection) this.catalog.delete(collection)
    const where = collection ? ` (collection "${collection}")` : ''
    return new ReplicatorError(
      KIND_TO_CODE[kind] ?? 'QUERY_FAILED',
      `[replicator:${this.name}] ${this.redact(errorMessage(error))}${where}`,
      {
        cause: error,
        details: { dialect: this.name, ...(collection ? { collection } : {}), ...driverDetails(error) },
      },
    )
  }

  /** Removes the URI's password from a text even where it does not appear as part of a URI. */
  protected redact(text: string): string {
    return redactPassword(text, this.config.uri)
  }
}

function operationsExecutor(operations: SqlOperations): SqlExecutor {
  return {
    inTransaction: false,
    execute: async (sql, params, options) => operations.run(sql, params, undefined, options),
  }
}

import { ReplicatorError } from '../errors.js'
import type { DialectOperations, ScanOptions, ScanPage } from '../dialect.js'
import { NATIVE_UNSENT, nativeColumnsFit, nativeText, type NativeRow } from '../native-row.js'
import type { Filter, FindOptions, UpdateChanges } from '../filter.js'
import type { CollectionDescription, ColumnDescription, Row, RowKey } from '../schema.js'
import { compileFilter, compileSort, requireColumn, SqlParams } from './compile-filter.js'
import { describeKey, keyIdentity, keyOfRow, keyToObject, requirePrimaryKey } from './row-keys.js'
import type { SqlDialect } from './sql-dialect.js'
import {
  columnEncoder,
  encodeValue,
  type SqlExecuteOptions,
  type SqlExecutor,
  type SqlFlavor,
  type SqlResult,
} from './sql-flavor.js'

const ROLLBACK = Symbol('rollback')
/** Most failing keys listed by a ROW_REJECTED error. */
const MAX_LISTED_FAILURES = 100

/** One key that a batch could not write, and why. */
export interface RowFailure {
  key: RowKey
  message: string
}

let savepointCounter = 0

/**
 * The CRUD surface of a SQL dialect, bound to one executor: the pool, or the connection of
 * an open transaction. Every statement is built from the dialect's {@link SqlFlavor}.
 */
export class SqlOperations implements DialectOperations {
  constructor(
    private readonly dialect: SqlDialect,
    private readonly executor: SqlExecutor,
  ) {}

  private get flavor() {
    return this.dialect.flavor
  }

  private q(name: string): string {
    return this.flavor.quoteIdentifier(name)
  }

  /** Runs one statement, turning driver errors into ReplicatorErrors. */
  async run(sql: string, params: unknown[], collection?: string, options?: SqlExecuteOptions): Promise<SqlResult> {
    try {
      return await this.executor.execute(sql, params, options)
    } catch (error) {
      throw this.dialect.toReplicatorError(error, collection)
    }
  }

  private describe(collection: string, columns?: Iterable<string>): Promise<CollectionDescription> {
    return this.dialect.describeWith(collection, this.executor, columns)
  }

  private decodeRows(rows: Row[], description: CollectionDescription): Row[] {
    const decode = this.dialect.rowDecoder(description)
    for (const row of rows) decode(row)
    return rows
  }

  async find(collection: string, filter?: Filter, options: FindOptions = {}): Promise<Row[]> {
    const fast = await this.findByCachedShape(collection, filter, options)
    if (fast) return fast
    const description = await this.describe(collection, filterColumns(filter, options))
    const params = new SqlParams(this.flavor)
    const where = compileFilter(filter, description, this.flavor, params)
    const columns = options.select?.length
      ? options.select.map((name) => this.q(requireColumn(description, name).name)).join(', ')
      : '*'
    const sql = `SELECT ${columns} FROM ${this.q(collection)} WHERE ${where}${compileSort(options.sort, description, this.flavor)}${this.flavor.limitClause(options.limit, options.skip)}`
    const result = await this.run(sql, params.values, collection, {
      exactIntegers: this.dialect.needsExactIntegers(description),
    })
    return this.decodeRows(result.rows, description)
  }

  /**
   * The hot path of point reads: a filter of plain values (`{ id: 5 }`, `{ a: 1, b: 'x' }`)
   * reuses the SQL compiled for the same shape; only the values are encoded per call.
   */
  private async findByCachedShape(
    collection: string,
    filter: Filter | undefined,
    options: FindOptions,
  ): Promise<Row[] | null> {
    if (!filter || options.sort || options.select || options.skip) return null
    let shape = `${options.limit ?? ''}`
    for (const field in filter) {
      const value = filter[field]
      if (value === null || value === undefined || typeof value === 'object' || field.startsWith('$')) return null
      shape += `\u0000${field}`
    }
    const description = await this.describe(collection)
    const statement = this.dialect.cachedStatement(description, shape, () => {
      const columns = Object.keys(filter).map((field) => requireColumn(description, field))
      const params = new SqlParams(this.flavor)
      const where = compileFilter(filter, description, this.flavor, params)
      return {
        sql: `SELECT * FROM ${this.q(collection)} WHERE ${where}${this.flavor.limitClause(options.limit, undefined)}`,
        columns,
      }
    })
    const values = new Array<unknown>(statement.columns.length)
    for (let index = 0; index < statement.columns.length; index++) {
      const column = statement.columns[index]!
      const value = filter[column.name]
      if (this.flavor.canMatch && !this.flavor.canMatch(value, column)) return null // the general path answers "no match"
      values[index] = encodeValue(this.flavor, value, column)
    }
    const result = await this.run(statement.sql, values, collection, {
      exactIntegers: this.dialect.needsExactIntegers(description),
    })
    return this.decodeRows(result.rows, description)
  }

  async findOne(collection: string, filter?: Filter, options: Omit<FindOptions, 'limit'> = {}): Promise<Row | null> {
    const rows = await this.find(collection, filter, { ...options, limit: 1 })
    return rows[0] ?? null
  }

  async count(collection: string, filter?: Filter): Promise<number> {
    const description = await this.describe(collection, filterColumns(filter))
    const params = new SqlParams(this.flavor)
    const where = compileFilter(filter, description, this.flavor, params)
    const result = await this.run(
      `SELECT COUNT(*) AS ${this.q('count')} FROM ${this.q(collection)} WHERE ${where}`,
      params.values,
      collection,
    )
    return Number(result.rows[0]?.count ?? 0)
  }

  async insert(collection: string, row: Row): Promise<Row> {
    const names = Object.keys(row).filter((name) => row[name] !== undefined)
    const description = await this.describe(collection, names)
    const params = new SqlParams(this.flavor)
    const values = names.map((name) =>
      params.add(encodeValue(this.flavor, row[name], requireColumn(description, name))),
    )
    const body = names.length
      ? `(${names.map((name) => this.q(name)).join(', ')}) VALUES (${values.join(', ')})`
      : this.flavor.emptyInsertBody
    const returning = this.flavor.supportsReturning ? ' RETURNING *' : ''
    let result: SqlResult
    try {
      result = await this.run(`INSERT INTO ${this.q(collection)} ${body}${returning}`, params.values, collection)
    } catch (error) {
      throw this.namingKey(error, collection, description, row)
    }
    if (result.rows[0]) return this.decodeRows([result.rows[0]], description)[0]!
    // No RETURNING: read the row back by its key (given, or generated by the database).
    const primaryKey = description.primaryKey
    if (primaryKey.length && primaryKey.every((column) => row[column] !== undefined)) {
      return (
        (await this.findOne(collection, keyToObject(keyOfRow(row, primaryKey), primaryKey, collection))) ?? { ...row }
      )
    }
    if (primaryKey.length === 1 && result.insertId !== undefined) {
      return (await this.findOne(collection, { [primaryKey[0]!]: result.insertId })) ?? { ...row }
    }
    return { ...row }
  }

  async update(collection: string, filter: Filter, changes: UpdateChanges): Promise<number> {
    const { set, inc } = splitChanges(changes, collection)
    const description = await this.describe(collection, [
      ...Object.keys(set),
      ...Object.keys(inc),
      ...filterColumns(filter),
    ])
    const params = new SqlParams(this.flavor)
    const assignments: string[] = []
    for (const [name, value] of Object.entries(set)) {
      if (value === undefined) continue
      assignments.push(
        `${this.q(name)} = ${params.add(encodeValue(this.flavor, value, requireColumn(description, name)))}`,
      )
    }
    for (const [name, amount] of Object.entries(inc)) {
      const column = requireColumn(description, name)
      if (typeof amount !== 'number' && typeof amount !== 'bigint') {
        throw new ReplicatorError(
          'FILTER_INVALID',
          `$inc of "${collection}.${name}" takes a number, got ${typeof amount}.`,
        )
      }
      assignments.push(`${this.q(name)} = ${this.q(name)} + ${params.add(encodeValue(this.flavor, amount, column))}`)
    }
    if (assignments.length === 0) return 0
    const where = compileFilter(filter, description, this.flavor, params)
    try {
      const result = await this.run(
        `UPDATE ${this.q(collection)} SET ${assignments.join(', ')} WHERE ${where}`,
        params.values,
        collection,
      )
      return result.affected
    } catch (error) {
      throw this.namingKey(error, collection, description, filter)
    }
  }

  async delete(collection: string, filter: Filter): Promise<number> {
    const description = await this.describe(collection, filterColumns(filter))
    const params = new SqlParams(this.flavor)
    const where = compileFilter(filter, description, this.flavor, params)
    const result = await this.run(`DELETE FROM ${this.q(collection)} WHERE ${where}`, params.values, collection)
    return result.affected
  }

  async upsertMany(collection: string, rows: Row[]): Promise<number> {
    if (!Array.isArray(rows))
      throw new ReplicatorError('ROW_REJECTED', `upsertMany("${collection}") takes an array of rows.`)
    if (rows.length === 0) return 0
    let description = await this.describe(collection)
    const groups = groupByShape(dedupeByKey(rows, requirePrimaryKey(description, 'upsertMany'), collection))
    const allColumns = new Set<string>()
    for (const group of groups) for (const name of group.columns) allColumns.add(name)
    description = await this.describe(collection, allColumns)
    const primaryKey = requirePrimaryKey(description, 'upsertMany')
    const statements: Array<{ sql: string; params: unknown[] }> = []
    for (const group of groups) {
      const missingKey = primaryKey.filter((column) => !group.columns.includes(column))
      if (missingKey.length) {
        throw new ReplicatorError(
          'ROW_REJECTED',
          `upsertMany("${collection}"): ${group.rows.length} row(s) lack primary key column(s) ${missingKey.join(', ')}; nothing was written.`,
          {
            details: { collection, missing: missingKey },
          },
        )
      }
      const columns = group.columns.map((name) => requireColumn(description, name))
      if (this.flavor.bulkUpsertSql && group.rows.length > 1) {
        statements.push({
          sql: this.dialect.bulkUpsertStatement(collection, description, group.columns),
          params: encodeColumns(group.rows, columns, this.flavor),
        })
        continue
      }
      const perStatement = Math.max(1, Math.floor(this.flavor.maxParameters / columns.length))
      for (let start = 0; start < group.rows.length; start += perStatement) {
        const chunk =
          start === 0 && group.rows.length <= perStatement ? group.rows : group.rows.slice(start, start + perStatement)
        statements.push({
          sql: this.dialect.upsertStatement(collection, description, group.columns, chunk.length),
          params: encodeRows(chunk, columns, this.flavor),
        })
      }
    }
    try {
      await this.atomicIfMany(statements, collection)
    } catch (error) {
      if (!ReplicatorError.isInstance(error) || error.code !== 'ROW_REJECTED') throw error
      const failures = await this.findRejectedRows(
        collection,
        description,
        groups.flatMap((group) => group.rows),
      )
      throw rejectedBatch(this.dialect.name, collection, rows.length, failures, error)
    }
    return rows.length
  }

  async upsertNative(collection: string, rows: NativeRow[], options: { fresh?: boolean } = {}): Promise<number> {
    const format = this.flavor.nativeTextFormat
    if (!format || !this.flavor.bulkUpsertSql || !this.flavor.arrayParameter)
      throw new ReplicatorError(
        'NOT_SUPPORTED',
        `[replicator:${this.dialect.name}] upsertNative: this dialect has no native text form; use upsertMany.`,
      )
    if (rows.length === 0) return 0
    const description = await this.describe(collection)
    const primaryKey = requirePrimaryKey(description, 'upsertNative')
    // One statement per table shape and set of sent columns (an update may leave a TOASTed value out).
    const groups = new Map<NativeRow['columns'], Map<string, NativeRow[]>>()
    for (const row of rows) {
      if (row.format !== format)
        throw new ReplicatorError(
          'ROW_REJECTED',
          `upsertNative("${collection}"): a row in ${JSON.stringify(row.format)} was given to a ${format} database; nothing was written.`,
          { details: { collection } },
        )
      let shapes = groups.get(row.columns)
      if (!shapes) {
        if (!nativeColumnsFit(row.columns, description))
          throw new ReplicatorError(
            'ROW_REJECTED',
            `upsertNative("${collection}"): the rows' columns (${row.columns.map((column) => `${column.name} ${column.nativeType}`).join(', ')}) do not match the table's; nothing was written.`,
            { details: { collection } },
          )
        groups.set(row.columns, (shapes = new Map()))
      }
      let shape = ''
      for (let index = 0; index < row.spans.length; index += 2) shape += row.spans[index] === NATIVE_UNSENT ? '-' : '+'
      const group = shapes.get(shape)
      if (group) group.push(row)
      else shapes.set(shape, [row])
    }
    const statements: Array<{ sql: string; params: unknown[] }> = []
    for (const [columns, shapes] of groups) {
      for (const [shape, group] of shapes) {
        const indexes = columns.map((_column, index) => index).filter((index) => shape[index] === '+')
        const names = indexes.map((index) => columns[index]!.name)
        const missingKey = primaryKey.filter((name) => !names.includes(name))
        if (missingKey.length)
          throw new ReplicatorError(
            'ROW_REJECTED',
            `upsertNative("${collection}"): ${group.length} row(s) lack primary key column(s) ${missingKey.join(', ')}; nothing was written.`,
            { details: { collection, missing: missingKey } },
          )
        if (options.fresh && !shape.includes('-') && (await this.copyNew(collection, names, group))) continue
        const params = indexes.map((index) => this.flavor.arrayParameter!(group.map((row) => nativeText(row, index))))
        statements.push({ sql: this.dialect.bulkUpsertStatement(collection, description, names), params })
      }
    }
    if (statements.length) await this.atomicIfMany(statements, collection)
    return rows.length
  }

  /**
   * Loads rows expected to be new by the flavor's bulk load, all or nothing (a savepoint in a
   * transaction). False when it cannot or when the database refused a row (a key that exists
   * already: a batch applied again after a crash): the caller then upserts them.
   */
  private async copyNew(collection: string, columns: string[], rows: NativeRow[]): Promise<boolean> {
    const { copyInSql, copyInData } = this.flavor
    if (!copyInSql || !copyInData || !this.executor.copyIn || !this.executor.inTransaction) return false
    const sql = copyInSql.call(
      this.flavor,
      this.q(collection),
      columns.map((name) => this.q(name)),
    )
    const data = copyInData.call(this.flavor, rows)
    try {
      await this.atomic(async () => {
        try {
          await this.executor.copyIn!(sql, data)
        } catch (error) {
          throw this.dialect.toReplicatorError(error, collection)
        }
      })
      return true
    } catch (error) {
      if (ReplicatorError.isInstance(error) && error.code === 'ROW_REJECTED') return false
      throw error
    }
  }

  async deleteMany(collection: string, keys: RowKey[]): Promise<number> {
    if (!Array.isArray(keys))
      throw new ReplicatorError('FILTER_INVALID', `deleteMany("${collection}") takes an array of keys.`)
    if (keys.length === 0) return 0
    const description = await this.describe(collection)
    const primaryKey = requirePrimaryKey(description, 'deleteMany')
    const keyColumns = primaryKey.map((name) => requireColumn(description, name))
    const perStatement = Math.max(1, Math.floor(this.flavor.maxParameters / primaryKey.length))
    const statements: Array<{ sql: string; params: unknown[] }> = []
    for (let start = 0; start < keys.length; start += perStatement) {
      const params = new SqlParams(this.flavor)
      const tuples = keys.slice(start, start + perStatement).map((key) => {
        const object = keyToObject(key, primaryKey, collection)
        const placeholders = keyColumns.map((column) =>
          params.add(encodeValue(this.flavor, object[column.name], column)),
        )
        return primaryKey.length === 1 ? placeholders[0] : `(${placeholders.join(', ')})`
      })
      const target =
        primaryKey.length === 1 ? this.q(primaryKey[0]!) : `(${primaryKey.map((name) => this.q(name)).join(', ')})`
      statements.push({
        sql: `DELETE FROM ${this.q(collection)} WHERE ${target} IN (${tuples.join(', ')})`,
        params: params.values,
      })
    }
    const results = await this.atomicIfMany(statements, collection)
    return results.reduce((sum, result) => sum + result.affected, 0)
  }

  async scan(collection: string, options: ScanOptions = {}): Promise<ScanPage> {
    const limit = options.limit ?? 1000
    if (!Number.isInteger(limit) || limit < 1)
      throw new ReplicatorError(
        'FILTER_INVALID',
        `scan("${collection}") limit must be a positive integer, got ${String(options.limit)}.`,
      )
    const description = await this.describe(collection)
    const primaryKey = requirePrimaryKey(description, 'scan')
    const params = new SqlParams(this.flavor)
    let where = ''
    if (options.after !== undefined && options.after !== null) {
      const after = keyToObject(options.after, primaryKey, collection)
      where = ` WHERE ${this.keysetCondition(description, primaryKey, after, params)}`
    }
    const order = primaryKey.map((name) => this.q(name)).join(', ')
    const sql = `SELECT * FROM ${this.q(collection)}${where} ORDER BY ${order}${this.flavor.limitClause(limit, undefined)}`
    const result = await this.run(sql, params.values, collection, {
      exactIntegers: this.dialect.needsExactIntegers(description),
    })
    const rows = this.decodeRows(result.rows, description)
    const last = rows[rows.length - 1]
    return { rows, next: rows.length === limit && last ? keyOfRow(last, primaryKey) : null }
  }

  async query<T = Row>(sql: string, params: unknown[] = []): Promise<T[]> {
    const result = await this.run(sql, params)
    return result.rows as T[]
  }

  /** `key > after` in primary-key order, as a row-value comparison or expanded. */
  private keysetCondition(
    description: CollectionDescription,
    primaryKey: string[],
    after: Row,
    params: SqlParams,
  ): string {
    const columns = primaryKey.map((name) => requireColumn(description, name))
    if (columns.length === 1 || this.flavor.rowValueComparison) {
      const left = columns.map((column) => this.q(column.name)).join(', ')
      const right = columns.map((column) => params.add(encodeValue(this.flavor, after[column.name], column))).join(', ')
      return columns.length === 1 ? `${left} > ${right}` : `(${left}) > (${right})`
    }
    // (a > x) OR (a = x AND b > y) OR …
    const alternatives = columns.map((column, index) => {
      const equal = columns
        .slice(0, index)
        .map((prefix) => `${this.q(prefix.name)} = ${params.add(encodeValue(this.flavor, after[prefix.name], prefix))}`)
      return `(${[...equal, `${this.q(column.name)} > ${params.add(encodeValue(this.flavor, after[column.name], column))}`].join(' AND ')})`
    })
    return `(${alternatives.join(' OR ')})`
  }

  /**
   * One statement on the pool runs as is (it is atomic); several run in one transaction.
   * Inside a transaction a savepoint keeps a rejected batch from aborting the whole transaction.
   */
  private async atomicIfMany(
    statements: Array<{ sql: string; params: unknown[] }>,
    collection: string,
  ): Promise<SqlResult[]> {
    if (statements.length === 1 && !this.executor.inTransaction)
      return [await this.run(statements[0]!.sql, statements[0]!.params, collection)]
    return this.atomic(async (operations) => {
      const results: SqlResult[] = []
      for (const statement of statements)
        results.push(await operations.run(statement.sql, statement.params, collection))
      return results
    })
  }

  /** Runs `fn` all-or-nothing: in a new transaction, or under a savepoint of the open one. */
  async atomic<T>(fn: (operations: SqlOperations) => Promise<T>): Promise<T> {
    if (!this.executor.inTransaction) return this.dialect.transactionOperations(fn)
    const name = this.q(`replicator_sp_${++savepointCounter}`)
    await this.run(`SAVEPOINT ${name}`, [])
    try {
      const result = await fn(this)
      await this.run(`RELEASE SAVEPOINT ${name}`, [])
      return result
    } catch (error) {
      await this.run(`ROLLBACK TO SAVEPOINT ${name}`, []).catch(() => undefined)
      throw error
    }
  }

  /**
   * After a batch was rejected: replays it row by row under savepoints in a transaction that
   * is always rolled back, to name every key the target refuses and why.
   */
  private async findRejectedRows(
    collection: string,
    description: CollectionDescription,
    rows: Row[],
  ): Promise<RowFailure[]> {
    const failures: RowFailure[] = []
    try {
      await this.atomic(async (operations) => {
        for (const row of rows) {
          const names = Object.keys(row).filter((name) => row[name] !== undefined)
          const columns = names.map((name) => requireColumn(description, name))
          const sql = this.dialect.upsertStatement(collection, description, names, 1)
          try {
            await operations.atomic((inner) => inner.run(sql, encodeRows([row], columns, this.flavor), collection))
          } catch (error) {
            failures.push({
              key: keyOfRow(row, description.primaryKey),
              message: ReplicatorError.isInstance(error) ? error.message : String(error),
            })
            if (failures.length >= MAX_LISTED_FAILURES) break
          }
        }
        throw ROLLBACK
      })
    } catch (error) {
      if (error !== ROLLBACK) return failures // the replay itself failed; report what was found
    }
    return failures
  }

  /** Adds the collection and key to a ROW_REJECTED error of a single-row statement. */
  private namingKey(error: unknown, collection: string, description: CollectionDescription, rowOrFilter: Row): unknown {
    if (!ReplicatorError.isInstance(error) || error.code !== 'ROW_REJECTED') return error
    const hasKey =
      description.primaryKey.length > 0 && description.primaryKey.every((column) => rowOrFilter[column] !== undefined)
    const key = hasKey ? keyOfRow(rowOrFilter, description.primaryKey) : undefined
    return new ReplicatorError('ROW_REJECTED', `${error.message}${hasKey ? ` (key ${describeKey(key)})` : ''}`, {
      cause: error.cause ?? error,
      details: { ...error.details, collection, ...(hasKey ? { key } : {}) },
    })
  }
}

function rejectedBatch(
  dialect: string,
  collection: string,
  size: number,
  failures: RowFailure[],
  error: ReplicatorError,
): ReplicatorError {
  const listed = failures
    .slice(0, 3)
    .map((failure) => `key ${describeKey(failure.key)}: ${stripPrefix(failure.message)}`)
    .join('; ')
  const summary = failures.length
    ? `${failures.length}${failures.length >= MAX_LISTED_FAILURES ? '+' : ''} row(s) rejected — ${listed}${failures.length > 3 ? '; …' : ''}`
    : stripPrefix(error.message)
  return new ReplicatorError(
    'ROW_REJECTED',
    `[replicator:${dialect}] Batch of ${size} row(s) into "${collection}" was not written (all or nothing): ${summary}`,
    {
      cause: error.cause ?? error,
      details: { collection, batchSize: size, failures },
    },
  )
}

function stripPrefix(message: string): string {
  return message.replace(/^\[replicator:[a-z]+\] /, '')
}

function splitChanges(
  changes: UpdateChanges,
  collection: string,
): { set: Record<string, unknown>; inc: Record<string, unknown> } {
  if (typeof changes !== 'object' || changes === null)
    throw new ReplicatorError('FILTER_INVALID', `update("${collection}") takes an object of changes.`)
  const keys = Object.keys(changes)
  if (!keys.some((key) => key.startsWith('$'))) return { set: changes as Record<string, unknown>, inc: {} }
  for (const key of keys) {
    if (key !== '$set' && key !== '$inc')
      throw new ReplicatorError(
        'FILTER_INVALID',
        `update("${collection}"): unsupported operator "${key}"; use $set and $inc (or a plain object).`,
      )
  }
  const typed = changes as { $set?: Record<string, unknown>; $inc?: Record<string, unknown> }
  return { set: typed.$set ?? {}, inc: typed.$inc ?? {} }
}

/** Column names a filter and find options mention (to refresh a stale description). */
function filterColumns(filter?: Filter, options: FindOptions = {}): string[] {
  const names: string[] = []
  const visit = (value: unknown) => {
    if (!value || typeof value !== 'object') return
    for (const [key, child] of Object.entries(value)) {
      if (key === '$or' || key === '$and') {
        if (Array.isArray(child)) child.forEach(visit)
      } else if (!key.startsWith('$')) names.push(key)
    }
  }
  visit(filter)
  if (options.sort) names.push(...Object.keys(options.sort))
  if (options.select) names.push(...options.select)
  return names
}

/** Keeps the last row of each primary key, in first-seen order (one statement cannot touch a row twice). */
function dedupeByKey(rows: Row[], primaryKey: string[], collection: string): Row[] {
  const single = primaryKey.length === 1 ? primaryKey[0]! : undefined
  const positions = new Map<unknown, number>()
  let unique: Row[] | undefined // allocated only when a key repeats
  for (let index = 0; index < rows.length; index++) {
    const row = rows[index]!
    if (typeof row !== 'object' || row === null)
      throw new ReplicatorError('ROW_REJECTED', `upsertMany("${collection}"): every row must be an object.`)
    const value = single === undefined ? undefined : row[single]
    const identity = typeof value === 'number' || typeof value === 'string' ? value : keyIdentity(row, primaryKey)
    const position = positions.get(identity)
    if (position === undefined) {
      positions.set(identity, unique ? unique.length : index)
      unique?.push(row)
    } else {
      unique ??= rows.slice(0, index)
      unique[position] = row
    }
  }
  return unique ?? rows
}

function definedColumns(row: Row): string[] {
  const columns: string[] = []
  for (const name in row) if (row[name] !== undefined) columns.push(name)
  return columns
}

function hasShape(row: Row, columns: string[]): boolean {
  let count = 0
  for (const name in row) {
    if (row[name] === undefined) continue
    if (columns[count] !== name) return false
    count++
  }
  return count === columns.length
}

/** Groups rows by their set of columns: one multi-row statement per shape. */
function groupByShape(rows: Row[]): Array<{ columns: string[]; rows: Row[] }> {
  const first = definedColumns(rows[0]!)
  if (rows.every((row) => hasShape(row, first))) return [{ columns: first, rows }] // the common case
  const groups = new Map<string, { columns: string[]; rows: Row[] }>()
  for (const row of rows) {
    const columns = definedColumns(row)
    const shape = columns.join('\u0000')
    let group = groups.get(shape)
    if (!group) groups.set(shape, (group = { columns, rows: [] }))
    group.rows.push(row)
  }
  return [...groups.values()]
}

/** One array parameter per column (for array-parameter upserts). */
function encodeColumns(rows: Row[], columns: ColumnDescription[], flavor: SqlFlavor): unknown[] {
  return columns.map((column) => {
    const encoder = columnEncoder(flavor, column)
    const values = new Array<unknown>(rows.length)
    for (let index = 0; index < rows.length; index++) {
      const value = rows[index]![column.name]
      values[index] = value === null || value === undefined ? null : encoder ? encoder(value) : value
    }
    return flavor.arrayParameter ? flavor.arrayParameter(values) : values
  })
}

function encodeRows(rows: Row[], columns: ColumnDescription[], flavor: SqlFlavor): unknown[] {
  const names = columns.map((column) => column.name)
  const encoders = columns.map((column) => columnEncoder(flavor, column))
  const width = columns.length
  const params = new Array<unknown>(rows.length * width)
  let index = 0
  for (const row of rows) {
    for (let column = 0; column < width; column++) {
      const value = row[names[column]!]
      const encoder = encoders[column]
      params[index++] = value === null || value === undefined ? null : encoder ? encoder(value) : value
    }
  }
  return params
}

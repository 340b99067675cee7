import type { ExecuteOptions, ExecuteResult, ScanOptions, ScanPage } from '../dialect.js'
import { ReplicatorError } from '../errors.js'
import type { Filter, FindOptions } from '../filter.js'
import type { CollectionDescription, Row } from '../schema.js'
import { compileFilter, compileSort, requireColumn, SqlParams } from './compile-filter.js'
import { keyOfRow, keyToObject, requirePrimaryKey } from '../row-keys.js'
import type { SqlDialect } from './sql-dialect.js'
import { encodeValue, rowDecoder, type SqlExecuteOptions, type SqlExecutor, type SqlResult } from './sql-flavor.js'
import { filterColumns } from './sql-row-helpers.js'

/**
 * The reading half of {@link SqlOperations}: statements, descriptions, finds, counts and
 * keyset scans, bound to one executor (the pool, or the connection of an open transaction).
 */
export class SqlReadOperations {
  constructor(
    protected readonly dialect: SqlDialect,
    protected readonly executor: SqlExecutor,
  ) {}

  protected get flavor() {
    return this.dialect.flavor
  }

  protected q(name: string): string {
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

  protected describe(collection: string, columns?: Iterable<string>): Promise<CollectionDescription> {
    return this.dialect.describeWith(collection, this.executor, columns)
  }

  protected decodeRows(rows: Row[], description: CollectionDescription): Row[] {
    const decode = rowDecoder(this.flavor, description)
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
  protected async findByCachedShape(
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

  async execute(sql: string, params: unknown[] = [], options: ExecuteOptions = {}): Promise<ExecuteResult> {
    const { rows, affected, insertId } = await this.run(sql, params, undefined, options)
    return insertId === undefined ? { rows, affected } : { rows, affected, insertId }
  }

  /** `key > after` in primary-key order, as a row-value comparison or expanded. */
  protected keysetCondition(
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
}

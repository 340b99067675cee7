import type { NativeRow } from '../native-row.js'
import type { CollectionDescription, ColumnDescription, ColumnSchema, Row } from '../schema.js'
import type { NativeTypeFamily } from '../portable-types.js'

/** Result of one SQL statement, as a dialect's driver adapter reports it. */
export interface SqlResult {
  rows: Row[]
  /** Rows inserted, updated or deleted. */
  affected: number
  /** Generated key of a single-row insert, where the driver reports one. */
  insertId?: number | bigint
}

/** Per-statement hints an executor may use. */
export interface SqlExecuteOptions {
  /**
   * False when no column read by the statement needs 64-bit exact integers, so a driver
   * may return plain numbers (cheaper). Default true.
   */
  exactIntegers?: boolean
  /**
   * Settings handed to the driver with this statement, for query builders that parse its
   * results themselves (node-postgres: `rowMode: 'array'`, `types`). Drivers without such
   * settings ignore them.
   */
  driver?: Record<string, unknown>
}

/** Runs SQL on a pool or on the connection of an open transaction. */
export interface SqlExecutor {
  execute(sql: string, params: unknown[], options?: SqlExecuteOptions): Promise<SqlResult>
  /** Optional (with the flavor's `copyInSql`): streams `data` into a `COPY … FROM STDIN`; resolves with the row count. */
  copyIn?(sql: string, data: Buffer): Promise<number>
  /** True when this executor is inside a transaction (savepoints are then used for atomic steps). */
  readonly inTransaction: boolean
}

/** How a driver error should be reported. */
export type SqlErrorKind = 'row-rejected' | 'missing-table' | 'connection' | 'other'

/**
 * The SQL spelling and value conversion of one database family. A dialect package provides
 * one; the shared {@link SqlDialect} base builds every statement from it. Pure logic: no I/O.
 */
export interface SqlFlavor {
  /** The database it spells for (`postgres`, `mariadb`, …): names it in messages and native-type lookups. */
  readonly family: NativeTypeFamily | (string & {})
  /** Quotes an identifier, rejecting names the database would truncate or cannot hold. */
  quoteIdentifier(name: string): string
  /** Placeholder for the 1-based parameter `index` (`$1` or `?`). */
  placeholder(index: number): string
  /** `INSERT … RETURNING *` is available. */
  readonly supportsReturning: boolean
  /** `(a, b) > (?, ?)` uses the index (else keyset conditions are expanded). */
  readonly rowValueComparison: boolean
  readonly maxParameters: number
  /** Body of an INSERT that gives no column (`DEFAULT VALUES`, or MySQL's `() VALUES ()`). */
  readonly emptyInsertBody: string
  /** Optional suffix that makes NULL sort as the smallest value (PostgreSQL sorts it last by default). */
  nullsOrdering?(descending: boolean): string
  /** `LIMIT/OFFSET` clause (may be empty). */
  limitClause(limit: number | undefined, skip: number | undefined): string
  /**
   * Upsert of `rowCount` rows into `table` (already quoted) with quoted `columns` and `key`;
   * placeholders numbered from 1, row by row.
   */
  upsertSql(table: string, columns: string[], key: string[], valuesSql: string): string
  /**
   * Optional: an upsert taking one array parameter per column (PostgreSQL `unnest`), so a
   * batch of any size is one statement with a handful of parameters. Names are quoted;
   * `arrayTypes` are the native column types to cast each array to.
   */
  bulkUpsertSql?(table: string, columns: string[], key: string[], arrayTypes: string[]): string
  /**
   * Optional, with `bulkUpsertSql`: one column's encoded values as the driver's array
   * parameter (e.g. PostgreSQL array text built in one pass). Default: the JS array as is.
   */
  arrayParameter?(values: unknown[]): unknown
  /**
   * Optional, with `bulkUpsertSql` and `arrayParameter`: the name of the text form of values
   * this database reads back through its type input functions (see `NativeRow`).
   */
  readonly nativeTextFormat?: string
  /**
   * Optional, with `nativeTextFormat`: the bulk load of native rows that are new (PostgreSQL
   * `COPY … FROM STDIN`, about three times cheaper for the server than an upsert), and its
   * input: every column of the rows, which were all sent. Names are quoted.
   */
  copyInSql?(table: string, columns: string[]): string
  copyInData?(rows: NativeRow[]): Buffer
  /**
   * Narrows `where` (rows of the quoted `table`) to one row, for tables without a primary key
   * whose equal rows are copies: `where` becomes a physical row id lookup (PostgreSQL `ctid`,
   * SQLite `rowid`), or `suffix` limits the statement (MySQL `LIMIT 1`).
   */
  oneRow(table: string, where: string): { where: string; suffix: string }
  /** Optional: equality of a column and a bound value, where `=` does not apply to the type (PostgreSQL `json`). */
  equalsSql?(column: ColumnDescription, quoted: string, placeholder: string): string
  /** Column definition for CREATE TABLE. */
  columnDefinition(column: ColumnSchema, isKey: boolean): string
  /** SQL expression of the server's current time as a portable timestamp (for heartbeats). */
  readonly serverNowSql: string
  /** Makes the open transaction writable despite a read-only default (PostgreSQL); absent where the account's privilege decides. */
  readonly readWriteTransactionSql?: string
  /** Trailing CREATE TABLE options (charset, engine…). */
  readonly createTableSuffix: string
  /**
   * Converter of portable values of this column into what the driver expects, or null when
   * they pass unchanged. Called once per column and cached; never given null values.
   */
  encoderFor(column: ColumnDescription): ValueConverter | null
  /** Converter of driver values of this column into portable values, or null when none is needed. */
  decoderFor(column: ColumnDescription): ValueConverter | null
  /**
   * False when `value` can never equal a value of this column (e.g. `'abc'` for a PostgreSQL
   * uuid). Filters then treat it as matching nothing instead of failing the query.
   */
  canMatch?(value: unknown, column: ColumnDescription): boolean
  /**
   * Optional: true when reading this column needs 64-bit exact integers from the driver
   * (drivers that can return cheaper plain numbers otherwise, such as better-sqlite3).
   */
  needsExactIntegers?(column: ColumnDescription): boolean
  /** Classifies a driver error. */
  classifyError(error: unknown): SqlErrorKind
}

/** Converts one non-null value. */
export type ValueConverter = (value: unknown) => unknown

const encoders = new WeakMap<SqlFlavor, WeakMap<ColumnDescription, ValueConverter | null>>()
const decoders = new WeakMap<SqlFlavor, WeakMap<ColumnDescription, ValueConverter | null>>()

function cached(
  store: WeakMap<SqlFlavor, WeakMap<ColumnDescription, ValueConverter | null>>,
  flavor: SqlFlavor,
  column: ColumnDescription,
  make: () => ValueConverter | null,
): ValueConverter | null {
  let perColumn = store.get(flavor)
  if (!perColumn) store.set(flavor, (perColumn = new WeakMap()))
  let converter = perColumn.get(column)
  if (converter === undefined) perColumn.set(column, (converter = make()))
  return converter
}

/** The flavor's encoder of a column, cached per column description. */
export function columnEncoder(flavor: SqlFlavor, column: ColumnDescription): ValueConverter | null {
  return cached(encoders, flavor, column, () => flavor.encoderFor(column))
}

/** The flavor's decoder of a column, cached per column description. */
export function columnDecoder(flavor: SqlFlavor, column: ColumnDescription): ValueConverter | null {
  return cached(decoders, flavor, column, () => flavor.decoderFor(column))
}

/** Encodes one portable value for a column (null stays null). */
export function encodeValue(flavor: SqlFlavor, value: unknown, column: ColumnDescription): unknown {
  if (value === null || value === undefined) return null
  const encoder = columnEncoder(flavor, column)
  return encoder ? encoder(value) : value
}

/** Quotes an identifier with `quote`, doubling embedded quotes. */
export function quoteWith(quote: string, name: string): string {
  return quote + name.split(quote).join(quote + quote) + quote
}

/** Per flavor and table description: the decoder of whole driver rows. */
const rowDecoders = new WeakMap<SqlFlavor, WeakMap<CollectionDescription, (row: Row) => void>>()

/** Decodes a driver row in place into portable values (only the columns that need it). */
export function rowDecoder(flavor: SqlFlavor, description: CollectionDescription): (row: Row) => void {
  let perTable = rowDecoders.get(flavor)
  if (!perTable) rowDecoders.set(flavor, (perTable = new WeakMap()))
  let decoder = perTable.get(description)
  if (!decoder) {
    const converting = description.columns.flatMap((column) => {
      const convert = columnDecoder(flavor, column)
      return convert ? [{ name: column.name, convert }] : []
    })
    decoder = (row: Row) => {
      for (let index = 0; index < converting.length; index++) {
        const { name, convert } = converting[index]!
        const value = row[name]
        if (value !== null && value !== undefined) row[name] = convert(value)
      }
    }
    perTable.set(description, decoder)
  }
  return decoder
}

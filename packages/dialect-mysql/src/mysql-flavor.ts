import {
  nativeTypeFor,
  normalizeDecimal,
  ReplicatorError,
  toDateString,
  type ColumnDescription,
  type ColumnSchema,
} from '@mostajs/replicator-core'
import { quoteWith, type SqlErrorKind, type SqlFlavor, type ValueConverter } from '@mostajs/replicator-core/sql'

/** MySQL and MariaDB refuse identifiers longer than this. */
const MAX_IDENTIFIER_LENGTH = 64

/** errno values of rows the server refuses (constraint and data errors). */
const ROW_REJECTED_ERRNOS = new Set([
  1048, // column cannot be null
  1062, // duplicate entry
  1136, // column count mismatch
  1264, // out of range
  1265, // data truncated
  1292, // incorrect datetime value
  1364, // field has no default value
  1366, // incorrect value for column
  1406, // data too long
  1451,
  1452, // foreign key
  1690, // value out of range
  3140, // invalid JSON (MySQL)
  3819, // check constraint (MySQL)
  4025, // check constraint (MariaDB)
])
const CONNECTION_ERRNOS = new Set([1040, 1044, 1045, 1049, 1053, 1129, 1130, 2002, 2003, 2006, 2013])

/** Largest value MySQL accepts as an unbounded LIMIT (used for OFFSET without LIMIT). */
const NO_LIMIT = '18446744073709551615'

/** SQL spelling and value conversion for MySQL (`family: 'mysql'`) or MariaDB (`'mariadb'`). */
export function createMysqlFlavor(family: 'mysql' | 'mariadb'): SqlFlavor {
  return {
    family,
    // MariaDB has INSERT … RETURNING since 10.5; MySQL has none.
    supportsReturning: family === 'mariadb',
    rowValueComparison: false, // MySQL does not always use the index for (a, b) > (x, y)
    maxParameters: 65535,

    quoteIdentifier(name: string): string {
      if (
        typeof name !== 'string' ||
        name === '' ||
        name.includes('\u0000') ||
        name.length > MAX_IDENTIFIER_LENGTH ||
        name.endsWith(' ')
      ) {
        throw new ReplicatorError(
          'CONFIG_INVALID',
          `[replicator:${family}] Invalid identifier ${JSON.stringify(name)}: names are 1 to ${MAX_IDENTIFIER_LENGTH} characters, without NUL or trailing space.`,
        )
      }
      return quoteWith('`', name)
    },

    placeholder: () => '?',

    emptyInsertBody: '() VALUES ()',

    oneRow: (_table, where) => ({ where, suffix: ' LIMIT 1' }),

    limitClause(limit, skip) {
      if (limit === undefined && !skip) return ''
      const count = limit === undefined ? NO_LIMIT : String(Math.max(0, Math.floor(limit)))
      return ` LIMIT ${count}${skip ? ` OFFSET ${Math.max(0, Math.floor(skip))}` : ''}`
    },

    upsertSql(table, columns, key, valuesSql) {
      const keySet = new Set(key)
      const updates = columns.filter((column) => !keySet.has(column)).map((column) => `${column} = VALUES(${column})`)
      // A key-only row: a no-op assignment keeps the statement an upsert.
      const assignments = updates.length ? updates.join(', ') : `${key[0]} = ${key[0]}`
      return `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${valuesSql} ON DUPLICATE KEY UPDATE ${assignments}`
    },

    columnDefinition(column: ColumnSchema, isKey: boolean): string {
      const nullable = isKey ? false : (column.nullable ?? true)
      let type = nativeTypeFor(family, column.type, column)
      // Key columns need a bounded length in InnoDB.
      if (isKey && (column.type === 'text' || column.type === 'json')) type = 'varchar(255)'
      if (isKey && column.type === 'binary') type = 'varbinary(255)'
      return `${this.quoteIdentifier(column.name)} ${type}${nullable ? '' : ' NOT NULL'}`
    },

    serverNowSql: 'UTC_TIMESTAMP(3)',

    // Binary collation: keys compare as in PostgreSQL and SQLite ('a' ≠ 'A'), so no two source rows collapse into one.
    createTableSuffix: ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin',

    encoderFor(column: ColumnDescription): ValueConverter | null {
      switch (column.type) {
        case 'json':
          return (value) => JSON.stringify(value)
        case 'timestamp':
          return (value) => (typeof value === 'string' || typeof value === 'number' ? new Date(value) : value)
        case 'date':
          return (value) => (value instanceof Date ? toDateString(value) : value)
        case 'decimal':
          return (value) => (typeof value === 'string' ? value : normalizeDecimal(value as number | bigint))
        default:
          return null
      }
    },

    decoderFor(column: ColumnDescription): ValueConverter | null {
      switch (column.type) {
        case 'boolean':
          return (value) => Number(value) !== 0
        case 'bigint':
          return (value) => (typeof value === 'bigint' ? value : BigInt(value as string))
        case 'decimal':
          return (value) => normalizeDecimal(value as string)
        case 'json':
          return (value) =>
            typeof value === 'string'
              ? JSON.parse(value)
              : Buffer.isBuffer(value)
                ? JSON.parse(value.toString('utf8'))
                : value
        default:
          return null
      }
    },

    classifyError(error: unknown): SqlErrorKind {
      const { errno, code, sqlState } = (error ?? {}) as { errno?: number; code?: string; sqlState?: string }
      if (errno === 1146) return 'missing-table'
      if (typeof errno === 'number' && ROW_REJECTED_ERRNOS.has(errno)) return 'row-rejected'
      if (typeof sqlState === 'string' && (sqlState.startsWith('23') || sqlState.startsWith('22')))
        return 'row-rejected'
      if (typeof errno === 'number' && CONNECTION_ERRNOS.has(errno)) return 'connection'
      if (
        typeof code === 'string' &&
        (/^E[A-Z]+$/.test(code) || code.startsWith('PROTOCOL_') || code === 'ER_ACCESS_DENIED_ERROR')
      )
        return 'connection'
      return 'other'
    },
  }
}

import {
  nativeTypeFor,
  normalizeDecimal,
  ReplicatorError,
  toDateString,
  type ColumnDescription,
  type ColumnSchema,
} from '@mostajs/replicator-core'
import {
  onConflictUpsertSql,
  quoteWith,
  type SqlErrorKind,
  type SqlFlavor,
  type ValueConverter,
} from '@mostajs/replicator-core/sql'

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER)

function toIsoTimestamp(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'string' || typeof value === 'number') {
    const date = new Date(value)
    return Number.isNaN(date.getTime()) ? value : date.toISOString()
  }
  return value
}

/** SQLite's own timestamps (CURRENT_TIMESTAMP) carry no zone and are UTC: never read them as local time. */
const ZONELESS = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/
function parseUtcTimestamp(text: string): Date {
  // Fast path: what this dialect writes (toISOString: 24 characters ending in Z).
  if (text.length === 24 && text.charCodeAt(23) === 90 /* Z */) return new Date(text)
  return new Date(ZONELESS.test(text) ? `${text.replace(' ', 'T')}Z` : text)
}

/** Values SQLite cannot bind are turned into what a reader expects back. */
function encodeLoose(value: unknown): unknown {
  if (typeof value === 'boolean') return value ? 1 : 0
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'object' && value !== null && !Buffer.isBuffer(value)) return JSON.stringify(value)
  return value
}

/**
 * SQL spelling and value conversion for SQLite. Timestamps are stored as ISO-8601 UTC text
 * (sortable, readable), booleans as 0/1, decimals as exact text, JSON as text.
 */
export const sqliteFlavor: SqlFlavor = {
  family: 'sqlite',
  supportsReturning: true,
  rowValueComparison: true,
  maxParameters: 32766,

  quoteIdentifier(name: string): string {
    if (typeof name !== 'string' || name === '' || name.includes('\u0000')) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `[replicator:sqlite] Invalid identifier ${JSON.stringify(name)}: names must be non-empty, without NUL.`,
      )
    }
    return quoteWith('"', name)
  },

  placeholder: () => '?',

  emptyInsertBody: 'DEFAULT VALUES',

  oneRow: (table, where) => ({ where: `rowid = (SELECT rowid FROM ${table} WHERE ${where} LIMIT 1)`, suffix: '' }),

  limitClause(limit, skip) {
    if (limit === undefined && !skip) return ''
    const count = limit === undefined ? -1 : Math.max(0, Math.floor(limit))
    return ` LIMIT ${count}${skip ? ` OFFSET ${Math.max(0, Math.floor(skip))}` : ''}`
  },

  upsertSql: (table, columns, key, valuesSql) => onConflictUpsertSql(table, columns, key, valuesSql, 'excluded'),

  columnDefinition(column: ColumnSchema, isKey: boolean): string {
    const nullable = isKey ? false : (column.nullable ?? true)
    return `${this.quoteIdentifier(column.name)} ${nativeTypeFor('sqlite', column.type, column)}${nullable ? '' : ' NOT NULL'}`
  },

  serverNowSql: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
  createTableSuffix: '',

  encoderFor(column: ColumnDescription): ValueConverter | null {
    switch (column.type) {
      case 'boolean':
        return (value) => (value === true ? 1 : value === false ? 0 : encodeLoose(value))
      case 'timestamp':
        return toIsoTimestamp
      case 'json':
        return (value) => JSON.stringify(value)
      case 'date':
        return (value) => (value instanceof Date ? toDateString(value) : value)
      case 'decimal':
        return (value) =>
          typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint'
            ? normalizeDecimal(value)
            : value
      case 'bigint':
        return (value) =>
          typeof value === 'number' && Number.isInteger(value)
            ? BigInt(value)
            : typeof value === 'string' && /^-?\d+$/.test(value)
              ? BigInt(value)
              : value
      case 'integer':
      case 'double':
      case 'string':
      case 'text':
      case 'uuid':
        return (value) => (typeof value === 'number' || typeof value === 'string' ? value : encodeLoose(value))
      default:
        return encodeLoose
    }
  },

  decoderFor(column: ColumnDescription): ValueConverter | null {
    switch (column.type) {
      case 'integer':
      case 'double':
        return (value) => (typeof value === 'bigint' ? Number(value) : value)
      case 'boolean':
        return (value) => Number(value) !== 0
      case 'bigint':
        return (value) => (typeof value === 'bigint' ? value : BigInt(String(value)))
      case 'decimal':
        return (value) => normalizeDecimal(String(value))
      case 'json':
        return (value) =>
          typeof value === 'string' ? JSON.parse(value) : typeof value === 'bigint' ? Number(value) : value
      case 'timestamp':
        return (value) => (typeof value === 'string' ? parseUtcTimestamp(value) : new Date(Number(value)))
      case 'date':
      case 'string':
      case 'text':
      case 'uuid':
        return (value) => (typeof value === 'string' || Buffer.isBuffer(value) ? value : String(value))
      case 'binary':
        return null
      default:
        return (value) => (typeof value === 'bigint' && value <= MAX_SAFE && value >= MIN_SAFE ? Number(value) : value)
    }
  },

  needsExactIntegers(column: ColumnDescription): boolean {
    // a decimal kept as text (DECIMAL_TEXT) never arrives as an integer
    return (
      column.type === 'bigint' ||
      column.type === 'unknown' ||
      (column.type === 'decimal' && !/TEXT/i.test(column.nativeType))
    )
  },

  classifyError(error: unknown): SqlErrorKind {
    const code = (error as { code?: unknown })?.code
    const message = error instanceof Error ? error.message : ''
    if (/^no such table/i.test(message)) return 'missing-table'
    if (typeof code === 'string') {
      if (code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG')
        return 'row-rejected'
      if (
        code === 'SQLITE_CANTOPEN' ||
        code === 'SQLITE_NOTADB' ||
        code === 'SQLITE_IOERR' ||
        code.startsWith('SQLITE_IOERR_')
      )
        return 'connection'
    }
    // better-sqlite3 refuses to bind some JS values with a TypeError or RangeError.
    if (error instanceof TypeError || error instanceof RangeError) return 'row-rejected'
    return 'other'
  },
}

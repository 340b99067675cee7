import {
  nativeTypeFor, normalizeDecimal, quoteWith, ReplicatorError, toDateString,
  type ColumnDescription, type ColumnSchema, type SqlErrorKind, type SqlFlavor,
} from '@mostajs/replicator-core'

function toIsoTimestamp(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'string' || typeof value === 'number') {
    const date = new Date(value)
    return Number.isNaN(date.getTime()) ? value : date.toISOString()
  }
  return value
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
      throw new ReplicatorError('CONFIG_INVALID', `[replicator:sqlite] Invalid identifier ${JSON.stringify(name)}: names must be non-empty, without NUL.`)
    }
    return quoteWith('"', name)
  },

  placeholder: () => '?',

  limitClause(limit, skip) {
    if (limit === undefined && !skip) return ''
    const count = limit === undefined ? -1 : Math.max(0, Math.floor(limit))
    return ` LIMIT ${count}${skip ? ` OFFSET ${Math.max(0, Math.floor(skip))}` : ''}`
  },

  upsertSql(table, columns, key, valuesSql) {
    const keySet = new Set(key)
    const updates = columns.filter((column) => !keySet.has(column)).map((column) => `${column} = excluded.${column}`)
    const onConflict = updates.length ? `DO UPDATE SET ${updates.join(', ')}` : 'DO NOTHING'
    return `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${valuesSql} ON CONFLICT (${key.join(', ')}) ${onConflict}`
  },

  columnDefinition(column: ColumnSchema, isKey: boolean): string {
    const nullable = isKey ? false : column.nullable ?? true
    return `${this.quoteIdentifier(column.name)} ${nativeTypeFor('sqlite', column.type, column)}${nullable ? '' : ' NOT NULL'}`
  },

  createTableSuffix: '',

  encode(value: unknown, column: ColumnDescription): unknown {
    switch (column.type) {
      case 'boolean':
        return value === true ? 1 : value === false ? 0 : encodeLoose(value)
      case 'timestamp':
        return toIsoTimestamp(value)
      case 'json':
        return JSON.stringify(value)
      case 'date':
        return value instanceof Date ? toDateString(value) : value
      case 'decimal':
        return typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint' ? normalizeDecimal(value) : value
      case 'bigint':
        return typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : typeof value === 'string' && /^-?\d+$/.test(value) ? BigInt(value) : value
      default:
        return encodeLoose(value)
    }
  },

  decode(value: unknown, column: ColumnDescription): unknown {
    switch (column.type) {
      case 'integer':
      case 'double':
        return typeof value === 'bigint' ? Number(value) : value
      case 'boolean':
        return Number(value) !== 0
      case 'bigint':
        return typeof value === 'bigint' ? value : BigInt(String(value))
      case 'decimal':
        return normalizeDecimal(String(value))
      case 'json':
        return typeof value === 'string' ? JSON.parse(value) : typeof value === 'bigint' ? Number(value) : value
      case 'timestamp':
        return typeof value === 'string' ? new Date(value) : new Date(Number(value))
      case 'date':
      case 'string':
      case 'text':
      case 'uuid':
        return typeof value === 'string' || Buffer.isBuffer(value) ? value : String(value)
      default:
        return typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value
    }
  },

  classifyError(error: unknown): SqlErrorKind {
    const code = (error as { code?: unknown })?.code
    const message = error instanceof Error ? error.message : ''
    if (/^no such table/i.test(message)) return 'missing-table'
    if (typeof code === 'string') {
      if (code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG') return 'row-rejected'
      if (code === 'SQLITE_CANTOPEN' || code === 'SQLITE_NOTADB' || code === 'SQLITE_IOERR' || code.startsWith('SQLITE_IOERR_')) return 'connection'
    }
    // better-sqlite3 refuses to bind some JS values with a TypeError or RangeError.
    if (error instanceof TypeError || error instanceof RangeError) return 'row-rejected'
    return 'other'
  },
}

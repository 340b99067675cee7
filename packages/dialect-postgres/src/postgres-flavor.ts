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

/** PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1). */
const MAX_IDENTIFIER_BYTES = 63

/** The spellings of a uuid PostgreSQL accepts (with or without hyphens and braces). */
const UUID_TEXT = /^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$/i

/** Values as PostgreSQL's type output functions write them, in an ISO DateStyle session (see NativeRow). */
export const NATIVE_TEXT_FORMAT = 'postgres-text'

/** An element of PostgreSQL array text: always quoted (so the string NULL stays a string). */
function quoteArrayElement(value: string): string {
  return NEEDS_ARRAY_ESCAPE.test(value) ? `"${value.replace(NEEDS_ARRAY_ESCAPE_ALL, '\\$&')}"` : `"${value}"`
}
const NEEDS_ARRAY_ESCAPE = /["\\]/
const NEEDS_ARRAY_ESCAPE_ALL = /["\\]/g

/** Per byte, the letter COPY's text format writes after a backslash for it (tab t, newline n, return r, backslash itself), else 0. */
const COPY_ESCAPES = new Uint8Array(256)
COPY_ESCAPES[0x09] = 0x74
COPY_ESCAPES[0x0a] = 0x6e
COPY_ESCAPES[0x0d] = 0x72
COPY_ESCAPES[0x5c] = 0x5c

/** SQL spelling and value conversion for PostgreSQL. */
/** A character or bit type without its length (`character varying(5)` → `character varying`). */
function unsized(type: string): string {
  return /^(character|bit)\b/.test(type) ? type.replace(/\(\d+\)$/, '') : type
}

export const postgresFlavor: SqlFlavor = {
  family: 'postgres',
  supportsReturning: true,
  rowValueComparison: true,
  maxParameters: 65535,

  quoteIdentifier(name: string): string {
    if (
      typeof name !== 'string' ||
      name === '' ||
      name.includes('\u0000') ||
      Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES
    ) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `[replicator:postgres] Invalid identifier ${JSON.stringify(name)}: PostgreSQL names are 1 to ${MAX_IDENTIFIER_BYTES} bytes, without NUL (longer names would be truncated silently).`,
      )
    }
    return quoteWith('"', name)
  },

  placeholder: (index: number) => `$${index}`,

  emptyInsertBody: 'DEFAULT VALUES',
  nullsOrdering: (descending) => (descending ? ' NULLS LAST' : ' NULLS FIRST'),

  limitClause(limit, skip) {
    return `${limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(limit))}` : ''}${skip ? ` OFFSET ${Math.max(0, Math.floor(skip))}` : ''}`
  },

  upsertSql: (table, columns, key, valuesSql) => onConflictUpsertSql(table, columns, key, valuesSql, 'EXCLUDED'),

  bulkUpsertSql(table, columns, key, arrayTypes) {
    // One array parameter per column: a 1,000-row batch binds 8 parameters, not 8,000.
    // An explicit cast to varchar(n) or char(n) silently truncates; cast to the base type and let
    // the insert's own assignment check the length (a value too long is then refused).
    const arrays = arrayTypes.map((type, index) => `$${index + 1}::${unsized(type)}[]`).join(', ')
    const keySet = new Set(key)
    const updates = columns.filter((column) => !keySet.has(column)).map((column) => `${column} = EXCLUDED.${column}`)
    return `INSERT INTO ${table} (${columns.join(', ')}) SELECT * FROM unnest(${arrays}) ON CONFLICT (${key.join(', ')}) ${updates.length ? `DO UPDATE SET ${updates.join(', ')}` : 'DO NOTHING'}`
  },

  nativeTextFormat: NATIVE_TEXT_FORMAT,

  copyInSql: (table, columns) => `COPY ${table} (${columns.join(', ')}) FROM STDIN`,

  copyInData(rows) {
    // Byte for byte from the source's text: only backslash, newline, carriage return and tab
    // are escaped (bytes that never occur inside a multi-byte UTF-8 character).
    let size = 0
    for (const row of rows)
      for (let index = 0; index < row.spans.length; index += 2) size += 2 * Math.max(1, row.spans[index + 1]!) + 1
    const out = Buffer.allocUnsafe(size)
    let at = 0
    for (const { data, spans } of rows) {
      for (let index = 0; index < spans.length; index += 2) {
        if (index) out[at++] = 0x09
        const start = spans[index]!
        if (start < 0) {
          out[at++] = 0x5c
          out[at++] = 0x4e
          continue
        } // \N (rows given here were sent whole)
        const end = start + spans[index + 1]!
        for (let byte = start; byte < end; byte++) {
          const value = data[byte]!
          const escaped = COPY_ESCAPES[value]!
          if (escaped === 0) out[at++] = value
          else {
            out[at++] = 0x5c
            out[at++] = escaped
          }
        }
      }
      out[at++] = 0x0a
    }
    return out.subarray(0, at)
  },

  arrayParameter(values: unknown[]): unknown {
    // pg's generic array encoder (a type check and two regex replaces per element) cost more
    // than the statement itself on streaming batches; values here are already encoded.
    const parts = new Array<string>(values.length)
    for (let index = 0; index < values.length; index++) {
      const value = values[index]
      if (value === null || value === undefined) parts[index] = 'NULL'
      else if (typeof value === 'string') parts[index] = quoteArrayElement(value)
      else if (typeof value === 'number') parts[index] = String(value)
      else if (typeof value === 'boolean') parts[index] = value ? 't' : 'f'
      else if (typeof value === 'bigint') parts[index] = value.toString()
      else return values // binary and anything unusual: pg's own encoder
    }
    return `{${parts.join(',')}}`
  },

  columnDefinition(column: ColumnSchema, isKey: boolean): string {
    const nullable = isKey ? false : (column.nullable ?? true)
    return `${this.quoteIdentifier(column.name)} ${nativeTypeFor('postgres', column.type, column)}${nullable ? '' : ' NOT NULL'}`
  },

  oneRow: (table, where) => ({ where: `ctid = (SELECT ctid FROM ${table} WHERE ${where} LIMIT 1)`, suffix: '' }),
  // json has no equality operator; jsonb compares values (not their spelling)
  equalsSql: (column, quoted, placeholder) =>
    column.type === 'json' ? `${quoted}::jsonb = ${placeholder}::jsonb` : `${quoted} = ${placeholder}`,

  serverNowSql: 'clock_timestamp()',
  readWriteTransactionSql: 'SET TRANSACTION READ WRITE',
  createTableSuffix: '',

  encoderFor(column: ColumnDescription): ValueConverter | null {
    switch (column.type) {
      case 'json':
        return (value) => JSON.stringify(value) // pg would turn a JS array into a PostgreSQL array
      case 'bigint':
      case 'integer':
      case 'double':
        return (value) => (typeof value === 'bigint' ? value.toString() : value)
      case 'decimal':
        return (value) => (typeof value === 'string' ? value : normalizeDecimal(value as number | bigint))
      case 'date':
        return (value) => (value instanceof Date ? toDateString(value) : value)
      case 'timestamp':
        // UTC text: a timestamp without time zone is read back as UTC, so it is written as UTC
        // (pg would write the Node process' local time)
        return (value) => (value instanceof Date && !Number.isNaN(value.getTime()) ? value.toISOString() : value)
      default:
        return null
    }
  },

  decoderFor(column: ColumnDescription): ValueConverter | null {
    // int8 arrives as bigint, dates as text and timestamps as Date from the pool's type parsers.
    switch (column.type) {
      case 'decimal':
        return (value) => normalizeDecimal(value as string)
      case 'bigint':
        return (value) => (typeof value === 'bigint' ? value : BigInt(value as string))
      default:
        return null
    }
  },

  canMatch(value: unknown, column: ColumnDescription): boolean {
    return column.type !== 'uuid' || (typeof value === 'string' && UUID_TEXT.test(value))
  },

  classifyError(error: unknown): SqlErrorKind {
    const code = (error as { code?: unknown })?.code
    if (typeof code === 'string') {
      if (code === '42P01') return 'missing-table'
      if (code.startsWith('23') || code.startsWith('22')) return 'row-rejected'
      if (code.startsWith('08') || code.startsWith('57P') || code === '28P01' || code === '28000' || code === '3D000')
        return 'connection'
      if (/^E[A-Z]+$/.test(code)) return 'connection' // ECONNREFUSED, ECONNRESET, ETIMEDOUT…
    }
    const message = error instanceof Error ? error.message : ''
    if (
      /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
        message,
      )
    )
      return 'connection'
    return 'other'
  },
}

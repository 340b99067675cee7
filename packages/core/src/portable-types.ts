/**
 * The portable column types. Every dialect maps each of them to a native column type and
 * converts values both ways, so a row read from one database and written to another comes
 * back equal. JavaScript representation of each value:
 *
 * | type | JS value |
 * |---|---|
 * | boolean | `boolean` |
 * | integer | `number` (32-bit) |
 * | bigint | `bigint` (64-bit, exact) |
 * | decimal | `string`, exact, normalised (`"12.50"` → `"12.5"`) |
 * | double | `number` |
 * | string, text | `string` |
 * | json | any JSON value (object, array, string, number, boolean) |
 * | timestamp | `Date` (UTC instant, millisecond precision) |
 * | date | `string` `YYYY-MM-DD` (a calendar day, no time zone) |
 * | binary | `Buffer` |
 * | uuid | `string`, lower case |
 */
export type PortableType =
  | 'boolean'
  | 'integer'
  | 'bigint'
  | 'decimal'
  | 'double'
  | 'string'
  | 'text'
  | 'json'
  | 'timestamp'
  | 'date'
  | 'binary'
  | 'uuid'

/** All portable types, in a stable order. */
export const PORTABLE_TYPES: readonly PortableType[] = [
  'boolean',
  'integer',
  'bigint',
  'decimal',
  'double',
  'string',
  'text',
  'json',
  'timestamp',
  'date',
  'binary',
  'uuid',
]

/** A column type found by introspection that has no portable equivalent. */
export type ColumnType = PortableType | 'unknown'

/** Dialect families with a native column type table. */
export type NativeTypeFamily = 'postgres' | 'mysql' | 'mariadb' | 'sqlite'

/**
 * The one table of native column types used when a dialect creates a column of a portable type.
 * `{p}`/`{s}` are precision/scale and `{n}` a length, filled from the column schema.
 * SQLite names are chosen for their type affinity: decimals are kept as TEXT (a NUMERIC
 * affinity would round them to 15 digits), timestamps as ISO-8601 text in UTC.
 */
export const NATIVE_TYPES: Record<PortableType, Record<NativeTypeFamily, string>> = {
  boolean: { postgres: 'boolean', mysql: 'tinyint(1)', mariadb: 'tinyint(1)', sqlite: 'BOOLEAN' },
  integer: { postgres: 'integer', mysql: 'int', mariadb: 'int', sqlite: 'INTEGER' },
  bigint: { postgres: 'bigint', mysql: 'bigint', mariadb: 'bigint', sqlite: 'BIGINT' },
  decimal: {
    postgres: 'numeric({p},{s})',
    mysql: 'decimal({p},{s})',
    mariadb: 'decimal({p},{s})',
    sqlite: 'DECIMAL_TEXT({p},{s})',
  },
  double: { postgres: 'double precision', mysql: 'double', mariadb: 'double', sqlite: 'DOUBLE' },
  string: { postgres: 'varchar({n})', mysql: 'varchar({n})', mariadb: 'varchar({n})', sqlite: 'VARCHAR({n})' },
  text: { postgres: 'text', mysql: 'longtext', mariadb: 'longtext', sqlite: 'TEXT' },
  json: { postgres: 'jsonb', mysql: 'json', mariadb: 'json', sqlite: 'JSON' },
  timestamp: { postgres: 'timestamptz(3)', mysql: 'datetime(3)', mariadb: 'datetime(3)', sqlite: 'TIMESTAMP' },
  date: { postgres: 'date', mysql: 'date', mariadb: 'date', sqlite: 'DATE' },
  binary: { postgres: 'bytea', mysql: 'longblob', mariadb: 'longblob', sqlite: 'BLOB' },
  uuid: { postgres: 'uuid', mysql: 'char(36)', mariadb: 'uuid', sqlite: 'UUID' },
}

/** Defaults used when a column schema gives no length / precision / scale. */
export const TYPE_DEFAULTS = { stringLength: 255, decimalPrecision: 38, decimalScale: 10 } as const

/** Renders the native type of a portable column for a dialect family. */
export function nativeTypeFor(
  family: NativeTypeFamily,
  type: PortableType,
  options: { length?: number; precision?: number; scale?: number } = {},
): string {
  return NATIVE_TYPES[type][family]
    .replace('{n}', String(options.length ?? TYPE_DEFAULTS.stringLength))
    .replace('{p}', String(options.precision ?? TYPE_DEFAULTS.decimalPrecision))
    .replace('{s}', String(options.scale ?? TYPE_DEFAULTS.decimalScale))
}

/**
 * Canonical text of an exact decimal: no exponent, no leading `+`, no trailing fractional
 * zeros, `-0` → `0`. Two databases that store the same number at different scales then
 * compare equal.
 */
export function normalizeDecimal(value: string | number | bigint): string {
  if (typeof value === 'string') {
    if (isCanonicalDecimal(value)) return value
    const trimmed = trimFractionZeros(value)
    if (trimmed !== undefined) return trimmed
  }
  let text = typeof value === 'string' ? value.trim() : value.toString()
  if (typeof value === 'number' && /e/i.test(text)) text = expandExponent(text)
  if (/e/i.test(text)) text = expandExponent(text)
  let negative = false
  if (text.startsWith('-')) {
    negative = true
    text = text.slice(1)
  } else if (text.startsWith('+')) text = text.slice(1)
  let [whole = '0', fraction = ''] = text.split('.')
  whole = whole.replace(/^0+(?=\d)/, '') || '0'
  fraction = fraction.replace(/0+$/, '')
  const body = fraction ? `${whole}.${fraction}` : whole
  return negative && body !== '0' ? `-${body}` : body
}

/** Fast path for what databases return at a fixed scale (`12.5000` → `12.5`, `3.000` → `3`). */
function trimFractionZeros(text: string): string | undefined {
  let end = text.length
  while (end > 0 && text.charCodeAt(end - 1) === 48 /* 0 */) end--
  if (end > 0 && text.charCodeAt(end - 1) === 46 /* . */) end--
  const trimmed = text.slice(0, end)
  return text.includes('.') && isCanonicalDecimal(trimmed) ? trimmed : undefined
}

/** Fast check for text that is already canonical (the common case when reading). */
function isCanonicalDecimal(text: string): boolean {
  const length = text.length
  if (length === 0) return false
  let index = text.charCodeAt(0) === 45 /* - */ ? 1 : 0
  if (index === length) return false
  if (text.charCodeAt(index) === 48 /* 0 */ && index + 1 < length && text.charCodeAt(index + 1) !== 46 /* . */)
    return false
  let point = -1
  for (let position = index; position < length; position++) {
    const code = text.charCodeAt(position)
    if (code === 46) {
      if (point !== -1 || position === index) return false
      point = position
    } else if (code < 48 || code > 57) return false
  }
  if (point !== -1 && (point === length - 1 || text.charCodeAt(length - 1) === 48)) return false
  if (index === 1 && /^-0(\.0*)?$/.test(text)) return false
  return true
}

function expandExponent(text: string): string {
  const match = /^([+-]?)(\d*)(?:\.(\d*))?e([+-]?\d+)$/i.exec(text)
  if (!match) return text
  const [, sign = '', whole = '', fraction = '', exponentText = '0'] = match
  const digits = whole + fraction
  const point = whole.length + Number(exponentText)
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`
}

/** Formats a Date as the portable `date` value (`YYYY-MM-DD`, UTC). */
export function toDateString(value: Date | string): string {
  if (typeof value === 'string') return value.length > 10 ? value.slice(0, 10) : value
  return value.toISOString().slice(0, 10)
}

// Binlog events as this package reads them: ZongJi's shape, TRUNCATE statements, spill records, times.
import type { ChangeEvent, Row } from '@mostajs/replicator-core'

export interface ZongJiEvent {
  getTypeName(): string
  nextPosition?: number
  binlogName?: string
  tableId?: number
  tableMap?: Record<number, { parentSchema: string; tableName: string; columns?: Array<{ name: string }> }>
  rows?: Array<Row | { before: Row; after: Row }>
  /** Which columns a row image holds (the after image's: `columns_present_bitmap2`, updates only). */
  columns_present_bitmap?: Buffer
  columns_present_bitmap2?: Buffer
  timestamp?: number
  /** The GTID of the transaction the event belongs to (ZongJi attaches it). */
  gtid?: string
  /** Query events: the statement and the session's database. */
  query?: string
  schema?: string
}

/**
 * A row image without the columns its event left out. Under binlog_row_image NOBLOB (unchanged
 * BLOB/TEXT columns) or MINIMAL (only the key before, only the changed columns after) ZongJi
 * gives those as NULL, which would overwrite the target's values: they are removed instead.
 */
export function sentColumns(row: Row, present: Buffer | undefined, columns: Array<{ name: string }> | undefined): Row {
  if (!present || !columns) return row
  let complete = true
  for (let index = 0; index < columns.length && complete; index++)
    complete = Boolean(present[index >> 3]! & (1 << (index & 7)))
  if (complete) return row
  const sent: Row = {}
  columns.forEach((column, index) => {
    if (present[index >> 3]! & (1 << (index & 7))) sent[column.name] = row[column.name]
  })
  return sent
}

const TRUNCATE = /^\s*truncate\s+(?:table\s+)?((?:`[^`]+`|\w+)(?:\s*\.\s*(?:`[^`]+`|\w+))?)\s*;?\s*$/i

/** The table a TRUNCATE statement empties (`[db.]table`), or null for any other statement. */
export function truncatedTable(event: ZongJiEvent): { schema: string; table: string } | null {
  const match = event.query === undefined ? null : TRUNCATE.exec(event.query)
  if (!match) return null
  const parts = match[1]!.split('.').map((part) => part.trim().replace(/^`|`$/g, ''))
  return parts.length === 2 ? { schema: parts[0]!, table: parts[1]! } : { schema: event.schema ?? '', table: parts[0]! }
}

const ZONELESS = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$/

/**
 * An event as one spill-file record: JSON that keeps Date, bigint and Buffer values (tagged
 * `$date`, `$big`, `$bin`); a JSON value's own object with `$` keys is wrapped (`$obj`) so
 * it is never taken for a tag.
 */
export function encodeEvent(event: ChangeEvent): Buffer {
  return Buffer.from(
    JSON.stringify(event, function (this: Record<string, unknown>, key, value: unknown) {
      const raw = this[key]
      if (raw instanceof Date) return { $date: Number.isNaN(raw.getTime()) ? null : raw.toISOString() }
      if (Buffer.isBuffer(raw)) return { $bin: raw.toString('base64') }
      if (typeof value === 'bigint') return { $big: value.toString() }
      if (
        value &&
        typeof value === 'object' &&
        !Array.isArray(value) &&
        Object.keys(value).some((name) => name.startsWith('$'))
      )
        return { $obj: Object.entries(value) }
      return value
    }),
  )
}

export function decodeEvent(record: Buffer): ChangeEvent {
  return JSON.parse(record.toString('utf8'), (_key, value: unknown) => {
    if (!value || typeof value !== 'object' || Array.isArray(value)) return value
    const tagged = value as Record<string, unknown>
    if ('$date' in tagged) return new Date(tagged.$date === null ? Number.NaN : String(tagged.$date))
    if ('$big' in tagged) return BigInt(String(tagged.$big))
    if ('$bin' in tagged) return Buffer.from(String(tagged.$bin), 'base64')
    if ('$obj' in tagged) return Object.fromEntries(tagged.$obj as Array<[string, unknown]>)
    return value
  }) as ChangeEvent
}

/** DATETIME text read from the binlog (written in UTC by this dialect) → Date. */
export function binlogTimestamp(value: unknown): unknown {
  return typeof value === 'string' && ZONELESS.test(value) ? new Date(`${value.replace(' ', 'T')}Z`) : value
}

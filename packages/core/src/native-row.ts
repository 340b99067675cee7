import type { CollectionDescription } from './schema.js'

/**
 * A row in its database's own text form (PostgreSQL: each value as its type's output
 * function writes it), as the bytes it arrived in. A target with the same `nativeTextFormat`
 * whose table has the same native column types takes it as it is (`upsertNative`): no
 * decoding into portable values and re-encoding, and no precision lost on the way
 * (microseconds, numeric digits).
 */
export interface NativeRow {
  format: string
  /** The source table's columns and native types; one array shared by the rows of a table. */
  columns: ReadonlyArray<{ readonly name: string; readonly nativeType: string }>
  /** The bytes the values are read from (UTF-8 text). */
  data: Buffer
  /**
   * Per column i: `spans[2i]` = where its text starts in `data`, or NATIVE_NULL (SQL NULL), or
   * NATIVE_UNSENT (not sent: keep the target's value); `spans[2i + 1]` = its length in bytes.
   */
  spans: Int32Array
}

export const NATIVE_NULL = -1
export const NATIVE_UNSENT = -2

/** The text of column `index`: a string, null (SQL NULL) or undefined (not sent). */
export function nativeText(row: Pick<NativeRow, 'data' | 'spans'>, index: number): string | null | undefined {
  const start = row.spans[2 * index]!
  if (start === NATIVE_NULL) return null
  if (start === NATIVE_UNSENT) return undefined
  return row.data.toString('utf8', start, start + row.spans[2 * index + 1]!)
}

/** True when every column was sent. */
export function nativeRowComplete(row: NativeRow): boolean {
  for (let index = 0; index < row.spans.length; index += 2) if (row.spans[index] === NATIVE_UNSENT) return false
  return true
}

/** `later`'s sent values over `earlier`'s (two images of one key, same columns). */
export function mergeNativeRows(earlier: NativeRow, later: NativeRow): NativeRow {
  const pieces: Buffer[] = []
  const spans = new Int32Array(later.spans.length)
  let offset = 0
  for (let index = 0; index < spans.length; index += 2) {
    const from = later.spans[index] === NATIVE_UNSENT ? earlier : later
    const start = from.spans[index]!
    spans[index] = start < 0 ? start : offset
    if (start < 0) continue
    const length = from.spans[index + 1]!
    spans[index + 1] = length
    pieces.push(from.data.subarray(start, start + length))
    offset += length
  }
  return { format: later.format, columns: later.columns, data: Buffer.concat(pieces, offset), spans }
}

/** True when rows of these native columns can be written into the described table as they are. */
export function nativeColumnsFit(columns: NativeRow['columns'], description: CollectionDescription): boolean {
  return columns.every((column) =>
    description.columns.some((target) => target.name === column.name && target.nativeType === column.nativeType),
  )
}

import { ReplicatorError } from '../errors.js'
import type { Filter, FindOptions, UpdateChanges } from '../filter.js'
import type { ColumnDescription, Row, RowKey } from '../schema.js'
import { describeKey, keyIdentity } from '../row-keys.js'
import { columnEncoder, type SqlFlavor } from './sql-flavor.js'

/** Most failing keys listed by a ROW_REJECTED error. */
export const MAX_LISTED_FAILURES = 100

/** One key that a batch could not write, and why. */
export interface RowFailure {
  key: RowKey
  message: string
}

export function rejectedBatch(
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

export function stripPrefix(message: string): string {
  return message.replace(/^\[replicator:[a-z]+\] /, '')
}

export function splitChanges(
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
export function filterColumns(filter?: Filter, options: FindOptions = {}): string[] {
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
export function dedupeByKey(rows: Row[], primaryKey: string[], collection: string): Row[] {
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

export function definedColumns(row: Row): string[] {
  const columns: string[] = []
  for (const name in row) if (row[name] !== undefined) columns.push(name)
  return columns
}

export function hasShape(row: Row, columns: string[]): boolean {
  let count = 0
  for (const name in row) {
    if (row[name] === undefined) continue
    if (columns[count] !== name) return false
    count++
  }
  return count === columns.length
}

/** Groups rows by their set of columns: one multi-row statement per shape. */
export function groupByShape(rows: Row[]): Array<{ columns: string[]; rows: Row[] }> {
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
export function encodeColumns(rows: Row[], columns: ColumnDescription[], flavor: SqlFlavor): unknown[] {
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

export function encodeRows(rows: Row[], columns: ColumnDescription[], flavor: SqlFlavor): unknown[] {
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

/** `(p1, p2), (p3, p4)…`: the placeholders of `rowCount` rows of `width` values, numbered from 1. */
export function placeholderTuples(flavor: SqlFlavor, rowCount: number, width: number): string {
  const tuples = new Array<string>(rowCount)
  for (let row = 0; row < rowCount; row++) {
    const placeholders = new Array<string>(width)
    for (let column = 0; column < width; column++) placeholders[column] = flavor.placeholder(row * width + column + 1)
    tuples[row] = `(${placeholders.join(', ')})`
  }
  return tuples.join(', ')
}

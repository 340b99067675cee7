import { ReplicatorError } from '../errors.js'
import type { Filter, FindOptions } from '../filter.js'
import type { CollectionDescription, ColumnDescription } from '../schema.js'
import { encodeValue, type SqlFlavor } from './sql-flavor.js'

const COMPARISONS: Record<string, string> = { $eq: '=', $ne: '<>', $gt: '>', $gte: '>=', $lt: '<', $lte: '<=' }

/** Collects bound parameters while SQL text is built. */
export class SqlParams {
  readonly values: unknown[] = []
  constructor(private readonly flavor: SqlFlavor) {}
  /** Adds a value and returns its placeholder. */
  add(value: unknown): string {
    this.values.push(value)
    return this.flavor.placeholder(this.values.length)
  }
}

/** Finds a column of a described collection or throws COLUMN_NOT_FOUND. */
export function requireColumn(description: CollectionDescription, name: string): ColumnDescription {
  const column = description.columns.find((candidate) => candidate.name === name)
  if (!column) {
    throw new ReplicatorError(
      'COLUMN_NOT_FOUND',
      `Collection "${description.name}" has no column "${name}". Columns: ${description.columns.map((c) => c.name).join(', ')}.`,
      {
        details: { collection: description.name, column: name },
      },
    )
  }
  return column
}

function isOperatorObject(value: unknown): value is Record<string, unknown> {
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    value instanceof Date ||
    Buffer.isBuffer(value)
  )
    return false
  const keys = Object.keys(value)
  return keys.length > 0 && keys.every((key) => key.startsWith('$'))
}

/**
 * Compiles an @mostajs/orm filter into a SQL condition (without `WHERE`), binding values
 * through `params` after encoding them for their column. An empty filter is `1=1`.
 */
export function compileFilter(
  filter: Filter | undefined,
  description: CollectionDescription,
  flavor: SqlFlavor,
  params: SqlParams,
): string {
  if (filter === undefined || filter === null) return '1=1'
  if (typeof filter !== 'object' || Array.isArray(filter)) {
    throw new ReplicatorError(
      'FILTER_INVALID',
      `A filter on "${description.name}" must be an object, got ${Array.isArray(filter) ? 'an array' : typeof filter}.`,
    )
  }
  const parts: string[] = []
  for (const [field, condition] of Object.entries(filter)) {
    if (condition === undefined) continue
    if (field === '$or' || field === '$and') {
      if (!Array.isArray(condition))
        throw new ReplicatorError('FILTER_INVALID', `${field} on "${description.name}" takes an array of filters.`)
      if (condition.length === 0) {
        parts.push(field === '$or' ? '1=0' : '1=1')
        continue
      }
      const joined = condition
        .map((sub) => `(${compileFilter(sub as Filter, description, flavor, params)})`)
        .join(field === '$or' ? ' OR ' : ' AND ')
      parts.push(`(${joined})`)
      continue
    }
    if (field.startsWith('$')) {
      throw new ReplicatorError(
        'FILTER_INVALID',
        `Unsupported filter operator "${field}" on "${description.name}". Supported: $eq $ne $gt $gte $lt $lte $in $nin $or $and.`,
      )
    }
    const column = requireColumn(description, field)
    const quoted = flavor.quoteIdentifier(field)
    if (isOperatorObject(condition)) {
      for (const [operator, operand] of Object.entries(condition))
        parts.push(compileComparison(quoted, column, operator, operand, description, flavor, params))
    } else {
      parts.push(compileComparison(quoted, column, '$eq', condition, description, flavor, params))
    }
  }
  return parts.length === 0 ? '1=1' : parts.join(' AND ')
}

function compileComparison(
  quoted: string,
  column: ColumnDescription,
  operator: string,
  operand: unknown,
  description: CollectionDescription,
  flavor: SqlFlavor,
  params: SqlParams,
): string {
  if (operator === '$in' || operator === '$nin') {
    if (!Array.isArray(operand))
      throw new ReplicatorError('FILTER_INVALID', `${operator} on "${description.name}.${column.name}" takes an array.`)
    const present = operand.filter((value) => value !== null && value !== undefined)
    const hasNull = present.length !== operand.length
    const values = present.filter((value) => flavor.canMatch?.(value, column) ?? true)
    const list = values.map((value) => params.add(encodeValue(flavor, value, column))).join(', ')
    if (operator === '$in') {
      const terms = [values.length ? `${quoted} IN (${list})` : '', hasNull ? `${quoted} IS NULL` : ''].filter(Boolean)
      return terms.length ? `(${terms.join(' OR ')})` : '1=0'
    }
    const terms = [values.length ? `${quoted} NOT IN (${list})` : '', hasNull ? `${quoted} IS NOT NULL` : ''].filter(
      Boolean,
    )
    // SQL's NOT IN is unknown for NULL cells; the ORM semantics keep them unless null is listed.
    if (!values.length) return terms.length ? terms.join(' AND ') : '1=1'
    return hasNull ? `(${terms.join(' AND ')})` : `(${terms[0]} OR ${quoted} IS NULL)`
  }
  const sqlOperator = COMPARISONS[operator]
  if (!sqlOperator) {
    throw new ReplicatorError(
      'FILTER_INVALID',
      `Unsupported filter operator "${operator}" on "${description.name}.${column.name}". Supported: $eq $ne $gt $gte $lt $lte $in $nin $or $and.`,
    )
  }
  if (operand === null || operand === undefined) {
    if (operator === '$eq') return `${quoted} IS NULL`
    if (operator === '$ne') return `${quoted} IS NOT NULL`
    throw new ReplicatorError(
      'FILTER_INVALID',
      `${operator} null on "${description.name}.${column.name}" matches nothing; use $eq or $ne with null.`,
    )
  }
  if (flavor.canMatch && !flavor.canMatch(operand, column)) {
    if (operator === '$eq') return '1=0'
    if (operator === '$ne') return '1=1'
    throw new ReplicatorError(
      'FILTER_INVALID',
      `${operator} ${JSON.stringify(operand)} cannot be compared with "${description.name}.${column.name}" (${column.nativeType}).`,
    )
  }
  const placeholder = params.add(encodeValue(flavor, operand, column))
  // $ne keeps NULL cells, as a document database would.
  if (operator === '$ne') return `(${quoted} <> ${placeholder} OR ${quoted} IS NULL)`
  return `${quoted} ${sqlOperator} ${placeholder}`
}

/** Compiles `sort` into an ORDER BY clause (with leading space) or ''. */
export function compileSort(sort: FindOptions['sort'], description: CollectionDescription, flavor: SqlFlavor): string {
  if (!sort) return ''
  const terms = Object.entries(sort).map(([field, direction]) => {
    requireColumn(description, field)
    const descending = direction === -1 || direction === 'desc'
    if (!descending && direction !== 1 && direction !== 'asc') {
      throw new ReplicatorError('FILTER_INVALID', `Sort direction of "${field}" must be 1, -1, 'asc' or 'desc'.`)
    }
    // NULL sorts as the smallest value everywhere (MySQL and SQLite do so natively).
    const nulls = flavor.nullsOrdering?.(descending) ?? ''
    return `${flavor.quoteIdentifier(field)} ${descending ? 'DESC' : 'ASC'}${nulls}`
  })
  return terms.length ? ` ORDER BY ${terms.join(', ')}` : ''
}

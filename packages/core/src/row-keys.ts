import { ReplicatorError } from './errors.js'
import type { CollectionDescription, Row, RowKey } from './schema.js'

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const prototype = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

/** The primary key columns of a collection, or NOT_SUPPORTED when it has none. */
export function requirePrimaryKey(description: CollectionDescription, operation: string): string[] {
  if (description.primaryKey.length === 0) {
    throw new ReplicatorError(
      'NOT_SUPPORTED',
      `${operation} needs a primary key, and collection "${description.name}" has none. Add a primary key to the table.`,
      {
        details: { collection: description.name },
      },
    )
  }
  return description.primaryKey
}

/**
 * Turns a key as callers give it (a scalar for a one-column key, an object of the key
 * columns otherwise) into an object of the key columns.
 */
export function keyToObject(key: RowKey, primaryKey: string[], collection: string): Row {
  if (isPlainObject(key)) {
    const missing = primaryKey.filter((column) => !(column in key))
    if (missing.length) {
      throw new ReplicatorError(
        'FILTER_INVALID',
        `Key of "${collection}" is missing primary key column(s) ${missing.join(', ')}.`,
        { details: { collection, key } },
      )
    }
    const object: Row = {}
    for (const column of primaryKey) object[column] = key[column]
    return object
  }
  if (primaryKey.length !== 1) {
    throw new ReplicatorError(
      'FILTER_INVALID',
      `Collection "${collection}" has a composite primary key (${primaryKey.join(', ')}); pass keys as objects.`,
      { details: { collection } },
    )
  }
  return { [primaryKey[0]!]: key }
}

/** The key of a row as callers use it: the value for a one-column key, else an object. */
export function keyOfRow(row: Row, primaryKey: string[]): RowKey {
  if (primaryKey.length === 1) return row[primaryKey[0]!]
  const key: Row = {}
  for (const column of primaryKey) key[column] = row[column]
  return key
}

function valueIdentity(value: unknown): string {
  if (value instanceof Date) return `d${value.getTime()}`
  if (Buffer.isBuffer(value)) return `b${value.toString('hex')}`
  if (typeof value === 'bigint') return `n${value}`
  if (typeof value === 'number') return `n${value}`
  return `${typeof value}${String(value)}`
}

/** A string that is equal for two rows exactly when their primary keys are equal. */
export function keyIdentity(row: Row, primaryKey: string[]): string {
  if (primaryKey.length === 1) return valueIdentity(row[primaryKey[0]!])
  return primaryKey.map((column) => valueIdentity(row[column])).join('\u0000')
}

/** Renders a key for an error message. */
export function describeKey(key: RowKey): string {
  if (isPlainObject(key))
    return `{ ${Object.entries(key)
      .map(([k, v]) => `${k}: ${describeKey(v)}`)
      .join(', ')} }`
  if (typeof key === 'string') return JSON.stringify(key)
  if (key instanceof Date) return key.toISOString()
  if (Buffer.isBuffer(key)) return `0x${key.toString('hex')}`
  return String(key)
}

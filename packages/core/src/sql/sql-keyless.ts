import type { CollectionDescription, Row } from '../schema.js'
import { requireColumn, SqlParams } from './compile-filter.js'
import { encodeValue, type SqlFlavor } from './sql-flavor.js'
import { encodeRows, groupByShape, placeholderTuples } from './sql-row-helpers.js'

// Statements for tables without a primary key: a row is found by all of its values, and only
// one copy of equal rows is touched (the flavor's `oneRow`: ctid, rowid or LIMIT 1).

type Statement = { sql: string; params: unknown[] }

/** Plain multi-row INSERTs (no upsert: there is no key to meet), one per shape and chunk. */
export function insertStatements(
  flavor: SqlFlavor,
  collection: string,
  description: CollectionDescription,
  rows: Row[],
): Statement[] {
  const statements: Statement[] = []
  const q = (name: string) => flavor.quoteIdentifier(name)
  for (const group of groupByShape(rows)) {
    const columns = group.columns.map((name) => requireColumn(description, name))
    const perStatement = Math.max(1, Math.floor(flavor.maxParameters / Math.max(1, columns.length)))
    for (let start = 0; start < group.rows.length; start += perStatement) {
      const chunk = group.rows.slice(start, start + perStatement)
      const body = columns.length
        ? `(${columns.map((column) => q(column.name)).join(', ')}) VALUES ${placeholderTuples(flavor, chunk.length, columns.length)}`
        : flavor.emptyInsertBody
      statements.push({ sql: `INSERT INTO ${q(collection)} ${body}`, params: encodeRows(chunk, columns, flavor) })
    }
  }
  return statements
}

/** The condition that a row equals `row` in each column it gives and the table has (NULL equals NULL). */
function equalsRow(flavor: SqlFlavor, description: CollectionDescription, row: Row, params: SqlParams): string {
  const parts: string[] = []
  for (const column of description.columns) {
    const value = row[column.name]
    if (value === undefined) continue
    const quoted = flavor.quoteIdentifier(column.name)
    if (value === null) parts.push(`${quoted} IS NULL`)
    else {
      const placeholder = params.add(encodeValue(flavor, value, column))
      parts.push(flavor.equalsSql ? flavor.equalsSql(column, quoted, placeholder) : `${quoted} = ${placeholder}`)
    }
  }
  return parts.length ? parts.join(' AND ') : '1=1'
}

/** DELETE of one row equal to `row`. */
export function deleteOneStatement(
  flavor: SqlFlavor,
  collection: string,
  description: CollectionDescription,
  row: Row,
): Statement {
  const params = new SqlParams(flavor)
  const table = flavor.quoteIdentifier(collection)
  const one = flavor.oneRow(table, equalsRow(flavor, description, row, params))
  return { sql: `DELETE FROM ${table} WHERE ${one.where}${one.suffix}`, params: params.values }
}

/** UPDATE of one row equal to `before` to the values of `after`. */
export function replaceOneStatement(
  flavor: SqlFlavor,
  collection: string,
  description: CollectionDescription,
  before: Row,
  after: Row,
): Statement {
  const params = new SqlParams(flavor)
  const table = flavor.quoteIdentifier(collection)
  const assignments = Object.keys(after)
    .filter((name) => after[name] !== undefined)
    .map((name) => {
      const column = requireColumn(description, name)
      return `${flavor.quoteIdentifier(name)} = ${params.add(encodeValue(flavor, after[name], column))}`
    })
  const one = flavor.oneRow(table, equalsRow(flavor, description, before, params))
  return { sql: `UPDATE ${table} SET ${assignments.join(', ')} WHERE ${one.where}${one.suffix}`, params: params.values }
}

import { keyIdentity, keyToObject, type DialectOperations, type Row, type RowKey } from '@mostajs/replicator-core'

/** Stable text of a value for comparisons (bigint, Date, Buffer included). */
export function stableText(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === 'bigint') return `${item}n`
    if (item && typeof item === 'object' && (item as { type?: string }).type === 'Buffer')
      return `0x${Buffer.from((item as { data: number[] }).data).toString('hex')}`
    if (item && typeof item === 'object' && !Array.isArray(item))
      return Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    return item
  })
}

/** True when every column of `incoming` has the same value in `current`. */
export function sameValues(incoming: Row, current: Row): boolean {
  for (const [name, value] of Object.entries(incoming))
    if (stableText(value) !== stableText(current[name])) return false
  return true
}

/**
 * Last writer wins on `column`; on a tie, both sides of a bidirectional rule pick the same row
 * (the greater stable text), so concurrent writes converge instead of flip-flopping.
 */
export function newerOrTieWinner(incoming: Row, current: Row, column: string): boolean {
  const incomingTime = timeOf(incoming, column)
  const currentTime = timeOf(current, column)
  if (incomingTime !== currentTime) return incomingTime > currentTime
  const merged = { ...current, ...incoming }
  return stableText(merged) > stableText(current)
}

/** Time of a row's timestamp column in ms; rows without one are the oldest. */
export function timeOf(row: Row | null | undefined, column: string): number {
  return row?.[column] instanceof Date ? (row[column] as Date).getTime() : -Infinity
}

/**
 * The rows of `keys` that a database holds, by key identity: `$in` lookups of 500 keys, or one
 * lookup per key when the key is composite.
 */
export async function rowsByKey(
  database: DialectOperations,
  collection: string,
  keys: RowKey[],
  primaryKey: string[],
  select?: string[],
): Promise<Map<string, Row>> {
  const rows = new Map<string, Row>()
  const options = select ? { select } : {}
  if (primaryKey.length === 1) {
    for (let start = 0; start < keys.length; start += 500) {
      for (const row of await database.find(
        collection,
        { [primaryKey[0]!]: { $in: keys.slice(start, start + 500) } },
        options,
      ))
        rows.set(keyIdentity(row, primaryKey), row)
    }
  } else {
    for (const key of keys) {
      const row = await database.findOne(collection, keyToObject(key, primaryKey, collection), options)
      if (row) rows.set(keyIdentity(row, primaryKey), row)
    }
  }
  return rows
}

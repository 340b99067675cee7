import type { DialectOperations } from './dialect.js'
import type { Row } from './schema.js'

/**
 * Streams a whole collection page by page in primary-key order, never holding more than one
 * page in memory.
 *
 * @example for await (const page of scanAll(db, 'users', { pageSize: 5000 })) await target.upsertMany('users', page)
 */
export async function* scanAll(
  dialect: Pick<DialectOperations, 'scan'>,
  collection: string,
  options: { pageSize?: number } = {},
): AsyncGenerator<Row[]> {
  let after: unknown = null
  do {
    const page = await dialect.scan(collection, { after, limit: options.pageSize ?? 1000 })
    if (page.rows.length) yield page.rows
    after = page.next
  } while (after !== null)
}

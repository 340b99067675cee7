import { ReplicatorError } from '@mostajs/replicator-core'
import { copyExact } from './keyless.js'
import type { RuleContext } from './rule-context.js'
import { addColumnsOfRows, addColumnsOfSource } from './schema-evolution.js'

/**
 * Copies one collection page by page, reading the next page while the previous one is being
 * written (two pages in memory at most).
 */
export async function copyCollection(ctx: RuleContext, collection: string): Promise<void> {
  if (!(await ctx.source.describeCollection(collection)).primaryKey.length) return copyExact(ctx, collection)
  const pageSize = ctx.config.batchSize ?? 1000
  const detail = ctx.perCollection.get(collection)!
  const progress = ctx.observer.snapshotProgress
  const total = progress ? await ctx.source.count(collection) : 0
  await addColumnsOfSource(ctx, collection) // the source table may have been altered since the target's was made
  if (await bulkCopy(ctx, collection, total)) return
  let done = 0
  let page = await ctx.source.scan(collection, { limit: pageSize })
  for (;;) {
    const next = page.next === null ? null : ctx.source.scan(collection, { after: page.next, limit: pageSize })
    next?.catch(() => undefined) // its failure is reported when awaited below
    if (page.rows.length) {
      await ctx.lease.keepAlive() // a long copy keeps the rule; a lost lease stops it (FENCED)
      await addColumnsOfRows(ctx, collection, page.rows) // the source table may have been altered
      await ctx.target.upsertMany(collection, page.rows)
      detail.snapshotRows += page.rows.length
      ctx.stats.recordsSynced += page.rows.length
      done += page.rows.length
      progress?.({ rule: ctx.config.name, collection, done, total: Math.max(total, done) })
    }
    if (!next) return
    page = await next
  }
}

/**
 * The fast path of a snapshot: when both databases speak the same bulk format (PostgreSQL →
 * PostgreSQL: COPY text) and the target table is empty, the rows stream from one COPY into
 * the other without being decoded. Returns false when it does not apply; a load the target
 * refuses (a pre-existing table of other types) also falls back to the row-by-row path,
 * which reports such rows precisely. Nothing is half-loaded: COPY is one statement.
 */
async function bulkCopy(ctx: RuleContext, collection: string, total: number): Promise<boolean> {
  const { source, target } = ctx
  if (!source.bulk || !target.bulk || !source.bulk?.format || source.bulk?.format !== target.bulk?.format) return false
  const columns = (await source.describeCollection(collection)).columns.map((column) => column.name)
  const targetColumns = new Set((await target.describeCollection(collection)).columns.map((column) => column.name))
  if (!columns.every((column) => targetColumns.has(column))) return false
  if ((await target.scan(collection, { limit: 1 })).rows.length) return false
  const detail = ctx.perCollection.get(collection)!
  const progress = ctx.observer.snapshotProgress
  let rows: number
  try {
    const data = await source.bulk!.export(collection, columns)
    rows = await target.bulk!.import(
      collection,
      columns,
      data,
      progress && ((done) => progress({ rule: ctx.config.name, collection, done, total: Math.max(total, done) })),
    )
  } catch (error) {
    if (ReplicatorError.isInstance(error) && (error.code === 'CONNECTION_FAILED' || error.code === 'NOT_CONNECTED'))
      throw error
    return false
  }
  detail.snapshotRows += rows
  ctx.stats.recordsSynced += rows
  return true
}

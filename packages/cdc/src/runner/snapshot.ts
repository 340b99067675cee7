import { keyOfRow, ReplicatorError, type ChangeEvent, type Row } from '@mostajs/replicator-core'
import { deadLetter } from './dead-letters.js'
import { DEAD_LETTERS_COLLECTION } from './internal-tables.js'
import { copyExact } from './keyless.js'
import { upsertSettingAside } from './set-aside.js'
import type { RuleContext } from './rule-context.js'
import { addColumnsOfRows, addColumnsOfSource } from './schema-evolution.js'

/**
 * Copies one collection page by page, reading the next page while the previous one is being
 * written (two pages in memory at most).
 */
export async function copyCollection(ctx: RuleContext, collection: string): Promise<void> {
  if (!(await ctx.source.describeCollection(collection)).primaryKey.length) return copyExact(ctx, collection)
  const pageSize = ctx.config.batchSize
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
      const written = await writePage(ctx, collection, page.rows)
      detail.snapshotRows += written
      ctx.stats.recordsSynced += written
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

/** Where a snapshot row's dead letter says it came from (a copy has no log position). */
const SNAPSHOT_POSITION = { dialect: 'snapshot', value: 'snapshot' }

/**
 * Writes one snapshot page. Rows the target refuses are dead-lettered with its reason and the
 * others written (each refusal names some rows: set aside, then the rest again), so a bad row
 * never stops a copy. Returns how many rows were written.
 */
async function writePage(ctx: RuleContext, collection: string, rows: Row[]): Promise<number> {
  const { primaryKey } = await ctx.target.describeCollection(collection)
  const letters: Row[] = []
  const written = await upsertSettingAside(
    ctx.target,
    collection,
    primaryKey,
    rows,
    (row) => row,
    (row, message) => {
      const event: ChangeEvent = {
        op: 'r',
        collection,
        key: keyOfRow(row, primaryKey),
        after: row,
        source: { dialect: ctx.source.name, database: '', position: SNAPSHOT_POSITION, ts: Date.now() },
      }
      letters.push(deadLetter(ctx, event, message, SNAPSHOT_POSITION))
    },
  )
  if (letters.length) {
    await ctx.target.upsertMany(DEAD_LETTERS_COLLECTION, letters)
    ctx.stats.deadLettered += letters.length
    ctx.stats.errors += letters.length
    ctx.perCollection.get(collection)!.deadLettered += letters.length
  }
  return written
}

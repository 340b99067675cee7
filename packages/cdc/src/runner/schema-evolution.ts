import {
  collectionSchemaOf,
  ReplicatorError,
  type ChangeEvent,
  type CollectionDescription,
  type NativeRow,
  type Row,
} from '@mostajs/replicator-core'
import type { RuleContext } from './rule-context.js'

/**
 * Columns added on the source since the target table was made arrive in after-images: each is
 * added to the target (nullable, with its portable type) before the batch is applied, so a
 * source `ALTER TABLE … ADD COLUMN` neither stops the rule nor loses the new values. Columns
 * dropped on the source simply stop being written. Runs outside the target transaction (DDL
 * commits implicitly on MySQL/MariaDB).
 */
export async function addNewColumns(ctx: RuleContext, events: ChangeEvent[]): Promise<void> {
  const targetColumns = new Map<string, Set<string>>()
  const missing = new Map<string, Set<string>>()
  const seenNative = new Set<NativeRow['columns']>() // one check per relation shape, not per row
  for (const event of events) {
    if (event.op === 'd' || event.op === 't') continue
    let present = targetColumns.get(event.collection)
    if (!present) {
      const description = await ctx.target.describeCollection(event.collection)
      targetColumns.set(event.collection, (present = new Set(description.columns.map((column) => column.name))))
    }
    const note = (name: string) => {
      if (present.has(name)) return
      let wanted = missing.get(event.collection)
      if (!wanted) missing.set(event.collection, (wanted = new Set()))
      wanted.add(name)
    }
    if (event.nativeAfter) {
      if (seenNative.has(event.nativeAfter.columns)) continue
      seenNative.add(event.nativeAfter.columns)
      for (const column of event.nativeAfter.columns) note(column.name)
    } else for (const name in event.after ?? {}) note(name) // no key array per row
  }
  for (const [collection, names] of missing) await addSourceColumns(ctx, collection, names)
}

/**
 * Before a snapshot page is written: columns its rows carry that the target table lacks (the
 * source table was altered after the target's was made, or during the copy) are added first.
 */
export async function addColumnsOfRows(ctx: RuleContext, collection: string, rows: Row[]): Promise<void> {
  if (!rows.length) return
  const present = new Set((await ctx.target.describeCollection(collection)).columns.map((column) => column.name))
  const missing = new Set<string>()
  for (const name in rows[0]) if (!present.has(name)) missing.add(name) // a page's rows share their columns
  if (missing.size) await addSourceColumns(ctx, collection, missing)
}

/** Before a copy: the target table gets the source's columns it lacks (read afresh from the source). */
export async function addColumnsOfSource(ctx: RuleContext, collection: string): Promise<void> {
  const source = await freshSourceDescription(ctx, collection)
  const present = new Set((await ctx.target.describeCollection(collection)).columns.map((column) => column.name))
  const missing = new Set(source.columns.map((column) => column.name).filter((name) => !present.has(name)))
  if (missing.size) await addColumnsFrom(ctx, source, missing)
}

/** Adds the source's columns `names` of `collection` to the target (nullable, portable type). */
async function addSourceColumns(ctx: RuleContext, collection: string, names: Set<string>): Promise<void> {
  await addColumnsFrom(ctx, await freshSourceDescription(ctx, collection), names)
}

/** The source table as it is now (the cached description may predate an ALTER TABLE). */
function freshSourceDescription(ctx: RuleContext, collection: string): Promise<CollectionDescription> {
  ctx.source.invalidateCatalog(collection)
  return ctx.source.describeCollection(collection)
}

/** Adds the columns `names` of the source table `description` to the target table. */
async function addColumnsFrom(ctx: RuleContext, description: CollectionDescription, names: Set<string>): Promise<void> {
  const collection = description.name
  const unportable = description.columns.filter((column) => names.has(column.name) && column.type === 'unknown')
  if (unportable.length) {
    const listed = unportable.map((column) => `${column.name} (${column.nativeType})`).join(', ')
    throw new ReplicatorError(
      'TYPE_UNSUPPORTED',
      `Rule "${ctx.config.name}": column(s) ${listed} added to "${collection}" on the source have no portable type, so the target cannot take them. Change their type on the source, or leave "${collection}" out of the rule.`,
      { details: { rule: ctx.config.name, collection, columns: unportable.map((column) => column.name) } },
    )
  }
  const added = collectionSchemaOf(description).columns.filter((column) => names.has(column.name))
  await ctx.target.ensureColumns(collection, added)
}

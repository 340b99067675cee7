import { keyIdentity, keyOfRow, scanAll } from '@mostajs/replicator-core'
import { tombstoneTimes } from './conflicts.js'
import { newerOrTieWinner, rowsByKey, sameValues, timeOf } from './row-compare.js'
import type { RuleContext } from './rule-context.js'
import { copyCollection } from './snapshot.js'

/** Copies a collection, then deletes the target rows whose keys the source no longer has. */
export async function mirrorCollection(ctx: RuleContext, collection: string): Promise<void> {
  const pageSize = ctx.config.batchSize
  const detail = ctx.perCollection.get(collection)!
  await copyCollection(ctx, collection)
  const { primaryKey } = await ctx.target.describeCollection(collection)
  if (!primaryKey.length) return // a table without a key is copied whole: nothing else to delete
  for await (const page of scanAll(ctx.target, collection, { pageSize })) {
    const present = await rowsByKey(
      ctx.source,
      collection,
      page.map((row) => keyOfRow(row, primaryKey)),
      primaryKey,
      primaryKey,
    )
    const absent = page
      .filter((row) => !present.has(keyIdentity(row, primaryKey)))
      .map((row) => keyOfRow(row, primaryKey))
    if (absent.length) {
      await ctx.target.deleteMany(collection, absent)
      detail.deleted += absent.length
      ctx.stats.deleted += absent.length
      ctx.stats.recordsSynced += absent.length
    }
  }
}

/**
 * Bidirectional re-seed: every source row the target lacks or holds older (last writer wins
 * on the timestamp column, a newer tombstone beats it) is written to the target; nothing is
 * deleted. The target's capture sees these writes and the reverse direction drops them (the
 * source holds them already).
 */
export async function mergeCollection(ctx: RuleContext, collection: string): Promise<void> {
  const pageSize = ctx.config.batchSize
  const detail = ctx.perCollection.get(collection)!
  const { primaryKey } = await ctx.target.describeCollection(collection)
  const column = ctx.config.timestampColumn
  for await (const page of scanAll(ctx.source, collection, { pageSize })) {
    const held = await rowsByKey(
      ctx.target,
      collection,
      page.map((row) => keyOfRow(row, primaryKey)),
      primaryKey,
    )
    const absent = page.map((row) => keyIdentity(row, primaryKey)).filter((identity) => !held.has(identity))
    const deletedAt = ctx.config.tombstones
      ? await tombstoneTimes(ctx, ctx.target, collection, absent)
      : new Map<string, number>()
    const newer = page.filter((row) => {
      const identity = keyIdentity(row, primaryKey)
      const current = held.get(identity)
      if (current) return !sameValues(row, current) && newerOrTieWinner(row, current, column)
      const deleted = deletedAt.get(identity)
      return deleted === undefined || timeOf(row, column) > deleted
    })
    if (!newer.length) continue
    await ctx.target.upsertMany(collection, newer)
    detail.snapshotRows += newer.length
    ctx.stats.recordsSynced += newer.length
  }
}

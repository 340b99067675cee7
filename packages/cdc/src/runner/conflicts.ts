import { createHash } from 'node:crypto'
import { describeKey, keyToObject, type ChangeEvent, type DialectOperations, type Row } from '@mostajs/replicator-core'
import { INTERNAL_PREFIX, TOMBSTONES_COLLECTION } from './internal-tables.js'
import { newerOrTieWinner, rowsByKey, sameValues, timeOf } from './row-compare.js'
import type { RuleContext } from './rule-context.js'

/** The net changes of one collection in a batch. */
export interface NetChanges {
  upserts: Map<string, ChangeEvent>
  deletes: Map<string, ChangeEvent>
  /** Keys whose first change in the batch is an insert. */
  inserted: Set<string>
  /** Bidirectional rules: older writes that crossed a delete of the batch (see applyPart). */
  crossed: Array<{ key: ChangeEvent['key']; at: number }>
  primaryKey: string[]
  /** The collection was emptied (TRUNCATE) before the changes kept here. */
  truncated: boolean
}

/** Id of the tombstone of one row of a rule (a hash: keys can be long). */
function tombstoneId(rule: string, collection: string, identity: string): string {
  return createHash('sha256').update(`${rule}\u0000${collection}\u0000${identity}`).digest('hex')
}

/**
 * Drops from `changes` what the rule's conflict resolution refuses, after reading the
 * target rows of the batch's keys in the same transaction.
 */
export async function resolveConflicts(
  ctx: RuleContext,
  tx: DialectOperations,
  collection: string,
  changes: NetChanges,
): Promise<string[]> {
  const policy = ctx.config.conflictResolution
  const refused: string[] = []
  if ((policy === 'source-wins' && !ctx.config.suppressNoOps) || collection.startsWith(INTERNAL_PREFIX)) return refused
  const { primaryKey } = changes
  const withDeletes = policy === 'target-wins' || Boolean(ctx.config.tombstones)
  const keys = [...changes.upserts.values(), ...(withDeletes ? changes.deletes.values() : [])].map((event) => event.key)
  const existing = await rowsByKey(tx, collection, keys, primaryKey)
  const column = ctx.config.timestampColumn
  const refuse = (map: Map<string, ChangeEvent>, identity: string) => {
    map.delete(identity)
    refused.push(identity)
    ctx.stats.skipped++
  }
  for (const [identity, event] of changes.upserts) {
    const current = existing.get(identity)
    if (!current) continue
    let keep: boolean
    if (ctx.config.suppressNoOps && sameValues(event.after ?? {}, current))
      keep = false // already there: the echo of our own apply
    else if (policy === 'timestamp') keep = newerOrTieWinner(event.after ?? {}, current, column)
    else keep = policy === 'source-wins'
    if (!keep) refuse(changes.upserts, identity)
  }
  if (policy === 'target-wins') {
    for (const identity of [...changes.deletes.keys()]) if (existing.has(identity)) refuse(changes.deletes, identity)
  }
  if (ctx.config.tombstones) await resolveWithTombstones(ctx, tx, collection, changes, existing, refuse)
  return refused
}

/**
 * Bidirectional rules: a delete is dated by its commit on the side where it was made, and
 * weighed against the other side's row like an update (the later one wins; a tie goes to
 * the delete). A delete that wins is remembered on both sides (`_replicator_tombstones`): an
 * older upsert of that row arriving later — it crossed the delete — is refused instead of
 * bringing the row back, and the side it came from, which still holds the older row, has it
 * deleted too. So both sides end with the same answer whichever way the two changes cross.
 */
async function resolveWithTombstones(
  ctx: RuleContext,
  tx: DialectOperations,
  collection: string,
  changes: NetChanges,
  existing: Map<string, Row>,
  refuse: (map: Map<string, ChangeEvent>, identity: string) => void,
): Promise<void> {
  const rule = ctx.config.tombstones!
  const column = ctx.config.timestampColumn
  const { primaryKey } = changes
  const timeOfRow = (row: Row | null | undefined) => timeOf(row, column)
  const tombstones: Row[] = []
  for (const [identity, event] of [...changes.deletes]) {
    const current = existing.get(identity)
    if (!current) continue // nothing to delete here (also the echo of a delete applied there)
    if (timeOfRow(current) > event.source.ts) {
      refuse(changes.deletes, identity)
      continue
    } // this side's row is newer
    tombstones.push({
      id: tombstoneId(rule, collection, identity),
      rule,
      collection,
      row_key: describeKey(event.key),
      deleted_at: new Date(event.source.ts),
    })
  }
  // upserts of rows this side does not hold: a delete of theirs may be newer
  const absent = [...changes.upserts].filter(([identity]) => !existing.has(identity))
  const deletedAt = await tombstoneTimes(
    ctx,
    tx,
    collection,
    absent.map(([identity]) => identity),
  )
  const stale = [...changes.crossed]
  for (const [identity, event] of absent) {
    const at = deletedAt.get(identity)
    if (at === undefined || timeOfRow(event.after) > at) continue
    refuse(changes.upserts, identity)
    stale.push({ key: event.key, at })
  }
  if (tombstones.length) {
    await tx.upsertMany(TOMBSTONES_COLLECTION, tombstones)
    await ctx.source.upsertMany(TOMBSTONES_COLLECTION, tombstones)
  }
  // The source still holds the row the delete beat: delete it there too, unless it changed
  // since (one conditional statement per row). Done before this batch commits: a failure
  // makes the batch, and this, run again.
  for (const { key, at } of stale) {
    const byKey = keyToObject(key, primaryKey, collection)
    await ctx.source.delete(collection, {
      $and: [byKey, { $or: [{ [column]: null }, { [column]: { $lte: new Date(at) } }] }],
    })
  }
}

/** When the rule's tombstones in `database` say these rows (key identities) were deleted, in ms. */
export async function tombstoneTimes(
  ctx: RuleContext,
  database: DialectOperations,
  collection: string,
  identities: string[],
): Promise<Map<string, number>> {
  const byId = new Map(
    identities.map((identity) => [tombstoneId(ctx.config.tombstones!, collection, identity), identity]),
  )
  const ids = [...byId.keys()]
  const times = new Map<string, number>()
  for (let start = 0; start < ids.length; start += 500) {
    for (const row of await database.find(TOMBSTONES_COLLECTION, { id: { $in: ids.slice(start, start + 500) } }))
      times.set(byId.get(String(row.id))!, timeOf(row, 'deleted_at'))
  }
  return times
}

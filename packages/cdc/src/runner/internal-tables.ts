import { createHash } from 'node:crypto'
import { ReplicatorError, type CollectionSchema, type DialectOperations, type Position } from '@mostajs/replicator-core'
import type { RuleContext } from './rule-context.js'

/** Where a rule's progress is kept, in the target, in the same transaction as the rows. */
export const OFFSETS_COLLECTION = '_replicator_offsets'
/** Rows a target refused, with the event and the error. */
export const DEAD_LETTERS_COLLECTION = '_replicator_dead_letters'
/** Deletes applied by bidirectional rules, with the time they were made (on both sides). */
export const TOMBSTONES_COLLECTION = '_replicator_tombstones'
export const TOMBSTONES_SCHEMA = {
  name: TOMBSTONES_COLLECTION,
  primaryKey: ['id'],
  columns: [
    { name: 'id', type: 'string' as const, length: 64 },
    { name: 'rule', type: 'string' as const },
    { name: 'collection', type: 'string' as const },
    { name: 'row_key', type: 'text' as const },
    { name: 'deleted_at', type: 'timestamp' as const },
  ],
}
/** Tables of the replicator itself: never carried by `['*']`, never checked for conflicts. */
export const INTERNAL_PREFIX = '_replicator_'

const LEASE_COLUMNS: CollectionSchema['columns'] = [
  { name: 'owner', type: 'string' },
  { name: 'epoch', type: 'bigint' },
  { name: 'lease_until', type: 'bigint' },
]

const OFFSETS_SCHEMA: CollectionSchema = {
  name: OFFSETS_COLLECTION,
  primaryKey: ['rule'],
  columns: [
    { name: 'rule', type: 'string' },
    { name: 'position', type: 'text' },
    { name: 'snapshot_done', type: 'boolean' },
    { name: 'origin', type: 'string' },
    { name: 'updated_at', type: 'timestamp' },
    // the rule's lease (see rule-lease.ts): who applies it, its fencing epoch, until when (ms)
    ...LEASE_COLUMNS,
  ],
}

const DEAD_LETTERS_SCHEMA: CollectionSchema = {
  name: DEAD_LETTERS_COLLECTION,
  primaryKey: ['id'],
  columns: [
    { name: 'id', type: 'string', length: 255 },
    { name: 'rule', type: 'string' },
    { name: 'collection', type: 'string' },
    { name: 'row_key', type: 'text' },
    { name: 'event', type: 'text' },
    { name: 'error', type: 'text' },
    { name: 'at', type: 'timestamp' },
  ],
}

/** The collections a rule has copied to its target (those added later are copied when they join). */
export const COPIED_COLLECTION = '_replicator_copied'

const COPIED_SCHEMA: CollectionSchema = {
  name: COPIED_COLLECTION,
  primaryKey: ['id'],
  columns: [
    { name: 'id', type: 'string', length: 64 },
    { name: 'rule', type: 'string' },
    { name: 'collection', type: 'string' },
    { name: 'copied_at', type: 'timestamp' },
    // a table without a key: the log position its copy was read at (JSON), see RuleContext.cuts
    { name: 'cut', type: 'text' },
  ],
}

/** Creates the rule's own tables on the target (and the tombstones on both sides). */
export async function ensureInternalTables(ctx: RuleContext): Promise<void> {
  await ctx.target.ensureCollection(OFFSETS_SCHEMA)
  await ctx.target.ensureColumns(OFFSETS_COLLECTION, LEASE_COLUMNS) // offsets of an earlier version
  await ctx.target.ensureCollection(COPIED_SCHEMA)
  await ctx.target.ensureColumns(COPIED_COLLECTION, COPIED_SCHEMA.columns.slice(-1)) // copies of an earlier version
  await ctx.target.ensureCollection(DEAD_LETTERS_SCHEMA)
  if (ctx.config.tombstones) {
    await ctx.target.ensureCollection(TOMBSTONES_SCHEMA)
    await ctx.source.ensureCollection(TOMBSTONES_SCHEMA)
  }
}

export interface StoredOffset {
  position: Position | null
  snapshotDone: boolean
  origin?: string | null
}

export async function readOffset(ctx: RuleContext): Promise<StoredOffset> {
  const row = await ctx.target.findOne(OFFSETS_COLLECTION, { rule: ctx.config.name })
  if (!row) return { position: null, snapshotDone: false }
  return {
    position: row.position ? (JSON.parse(String(row.position)) as Position) : null,
    snapshotDone: row.snapshot_done === true,
    origin: typeof row.origin === 'string' ? row.origin : null,
  }
}

/** The collections this rule copied to its target so far. */
export async function copiedCollections(ctx: RuleContext): Promise<Set<string>> {
  const rows = await ctx.target.find(COPIED_COLLECTION, { rule: ctx.config.name })
  return new Set(rows.map((row) => String(row.collection)))
}

/** The cuts of the keyless tables this rule copied (see RuleContext.cuts). */
export async function copyCuts(ctx: RuleContext): Promise<Map<string, Position>> {
  const rows = await ctx.target.find(COPIED_COLLECTION, { rule: ctx.config.name })
  return new Map(
    rows.filter((row) => row.cut).map((row) => [String(row.collection), JSON.parse(String(row.cut)) as Position]),
  )
}

/**
 * Records that `collections` were copied to the target (in `tx` when given). A keyless
 * table's copy also records its cut; other calls leave the cut as it is.
 */
export async function markCopied(
  ctx: RuleContext,
  collections: string[],
  options: { tx?: DialectOperations; cut?: Position | null } = {},
): Promise<void> {
  const rule = ctx.config.name
  const at = new Date()
  const id = (collection: string) => createHash('sha256').update(`${rule}\u0000${collection}`).digest('hex')
  const cut = options.cut === undefined ? {} : { cut: options.cut ? JSON.stringify(options.cut) : null }
  await (options.tx ?? ctx.target).upsertMany(
    COPIED_COLLECTION,
    collections.map((collection) => ({ id: id(collection), rule, collection, copied_at: at, ...cut })),
  )
}

/**
 * Forgets the rule on its target (its offset and copied collections): a rule added again
 * under the same name starts over with a snapshot instead of resuming from a position of a
 * capture that no longer exists.
 */
export async function forgetRule(ctx: RuleContext): Promise<void> {
  await ctx.target.delete(OFFSETS_COLLECTION, { rule: ctx.config.name }).catch(nullWhenMissing)
  await ctx.target.delete(COPIED_COLLECTION, { rule: ctx.config.name }).catch(nullWhenMissing)
}

/** For `.catch`: a rule's table that does not exist yet (no sync so far) reads as null; other errors stand. */
export function nullWhenMissing(error: unknown): null {
  if (ReplicatorError.isInstance(error) && error.code === 'COLLECTION_NOT_FOUND') return null
  throw error
}

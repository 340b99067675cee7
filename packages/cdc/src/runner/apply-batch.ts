import {
  keyIdentity,
  keyToObject,
  mergeNativeRows,
  nativeColumnsFit,
  nativeRowComplete,
  ReplicatorError,
  type ChangeEvent,
  type CollectionDescription,
  type DialectOperations,
  type NativeRow,
  type Position,
  type Row,
} from '@mostajs/replicator-core'
import { resolveConflicts, type NetChanges } from './conflicts.js'
import { deadLetter, deadLetterId } from './dead-letters.js'
import { DEAD_LETTERS_COLLECTION } from './internal-tables.js'
import { timeOf } from './row-compare.js'
import type { RuleContext } from './rule-context.js'
import { applyKeyless, withoutCopied } from './keyless.js'
import { upsertSettingAside } from './set-aside.js'
import { completeMovedRows } from './moved-rows.js'
import { addNewColumns } from './schema-evolution.js'

function samePosition(a: Position, b: Position): boolean {
  if (a === b || a.value === b.value) return true
  return (
    typeof a.value === 'object' && typeof b.value === 'object' && JSON.stringify(a.value) === JSON.stringify(b.value)
  )
}

/** Splits events into runs of whole transactions (same source position) of about `size` events. */
export function transactionSlices(
  events: ChangeEvent[],
  size: number,
): Array<{ events: ChangeEvent[]; position: Position }> {
  const slices: Array<{ events: ChangeEvent[]; position: Position }> = []
  let current: ChangeEvent[] = []
  for (let index = 0; index < events.length; index++) {
    const event = events[index]!
    current.push(event)
    const next = events[index + 1]
    const endOfTransaction = !next || !samePosition(next.source.position, event.source.position)
    if (endOfTransaction && (current.length >= size || !next)) {
      slices.push({ events: current, position: event.source.position })
      current = []
    }
  }
  return slices
}

/**
 * The net upsert of a key changed twice in one batch: the later image, completed by the
 * earlier one when it is partial (unchanged TOAST columns were not sent).
 */
function laterImage(earlier: ChangeEvent, later: ChangeEvent): ChangeEvent {
  const native = later.nativeAfter
  if (native && nativeRowComplete(native)) return later // complete: nothing to decode or merge
  if (!later.after) return later
  const merged: ChangeEvent = { ...later, after: { ...earlier.after, ...later.after } }
  const previous = earlier.nativeAfter
  if (native && previous && previous.columns === native.columns) merged.nativeAfter = mergeNativeRows(previous, native)
  else delete merged.nativeAfter
  return merged
}

/** Whether rows of a source table's native columns fit a target table (as described then). */
const nativeFits = new WeakMap<NativeRow['columns'], { description: CollectionDescription; fits: boolean }>()

/**
 * True when every after-image is in the target's native text form and fits its table (same
 * columns, same native types): the rows then go in as the source wrote them, undecoded.
 */
function takesNative(ctx: RuleContext, events: ChangeEvent[], description: CollectionDescription): boolean {
  const format = ctx.target.nativeTextFormat
  if (!format) return false
  for (const event of events) {
    const native = event.nativeAfter
    if (!native || native.format !== format) return false
    let fit = nativeFits.get(native.columns)
    if (fit?.description !== description)
      nativeFits.set(native.columns, (fit = { description, fits: nativeColumnsFit(native.columns, description) }))
    if (!fit.fits) return false
  }
  return true
}

/**
 * Applies whole transactions as their net effect per key (the last change of a key wins;
 * per-key order is kept), with the offset, in one target transaction. Rows the target
 * rejects go to the dead-letter table with the error; the rest of the batch still lands.
 */
export async function applyBatch(
  ctx: RuleContext,
  events: ChangeEvent[],
  position: Position,
  nextPart?: () => Promise<ChangeEvent[] | null>,
): Promise<void> {
  const counts: Array<() => void> = []
  await addNewColumns(ctx, events)
  await ctx.target.transaction(async (tx) => {
    await ctx.lease.holdIn(tx) // however long this transaction runs, no other process takes the rule meanwhile
    // A source transaction too large to hold arrives in parts: all of them go into this one
    // target transaction, applied in order.
    let partNumber = 0
    for (let part: ChangeEvent[] | null = events; part; part = nextPart ? await nextPart() : null)
      counts.push(await applyPart(ctx, tx, part, position, partNumber++))
    await ctx.lease.writeOffset(tx, position, ctx.config.origin ?? null) // FENCED (rolled back) if the lease was lost
  })
  for (const count of counts) count() // counted once committed
}

/** Applies `events` in the open target transaction; returns what adds them to the stats. */
async function applyPart(
  ctx: RuleContext,
  tx: DialectOperations,
  events: ChangeEvent[],
  position: Position,
  partNumber: number,
): Promise<() => void> {
  events = withoutCopied(ctx, events)
  // `inserted`: keys whose first change in the batch is an insert (expected new on the target)
  const net = new Map<string, NetChanges>()
  // tables without a primary key: their changes in order, applied one by one
  const keyless = new Map<string, ChangeEvent[]>()
  for (const event of events) {
    let changes = net.get(event.collection)
    const inOrder = keyless.get(event.collection)
    if (inOrder) {
      inOrder.push(event)
      continue
    }
    if (!changes) {
      const { primaryKey } = await ctx.target.describeCollection(event.collection)
      if (!primaryKey.length) {
        keyless.set(event.collection, [event])
        continue
      }
      net.set(
        event.collection,
        (changes = {
          upserts: new Map(),
          deletes: new Map(),
          inserted: new Set(),
          crossed: [],
          primaryKey,
          truncated: false,
        }),
      )
    }
    if (event.op === 't') {
      // The collection was emptied: what came before in the batch is gone, what follows lands.
      changes.upserts.clear()
      changes.deletes.clear()
      changes.inserted.clear()
      changes.crossed = []
      changes.truncated = true
      continue
    }
    const identity = keyIdentity(keyToObject(event.key, changes.primaryKey, event.collection), changes.primaryKey)
    if (event.op === 'c' && !changes.upserts.has(identity) && !changes.deletes.has(identity))
      changes.inserted.add(identity)
    if (event.op === 'd') {
      changes.upserts.delete(identity)
      changes.deletes.set(identity, event)
    } else {
      const deleted = changes.deletes.get(identity)
      if (deleted && ctx.config.tombstones && timeOf(event.after, ctx.config.timestampColumn) <= deleted.source.ts) {
        // An older write that crossed this delete (applied here from the other side before the
        // delete was read): the delete stands, and the source loses that row again.
        changes.crossed.push({ key: event.key, at: deleted.source.ts })
        ctx.stats.skipped++
        continue
      }
      changes.deletes.delete(identity)
      const earlier = changes.upserts.get(identity)
      changes.upserts.set(identity, earlier ? laterImage(earlier, event) : event)
    }
  }
  const deadLetters: Row[] = []
  const skipped = new Set<string>() // collection + key identity refused by the conflict resolution
  for (const [collection, changes] of net) {
    const description = await ctx.target.describeCollection(collection)
    if (changes.truncated) await tx.delete(collection, {})
    await completeMovedRows(tx, collection, changes, description)
    for (const identity of await resolveConflicts(ctx, tx, collection, changes))
      skipped.add(`${collection}\u0000${identity}`)
    let upserts = [...changes.upserts.values()]
    if (upserts.length && tx.upsertNative && takesNative(ctx, upserts, description)) {
      try {
        const fresh = [...changes.upserts.keys()].every((identity) => changes.inserted.has(identity))
        await tx.upsertNative(
          collection,
          upserts.map((event) => event.nativeAfter!),
          { fresh },
        )
        upserts = []
      } catch (error) {
        // A row the target refuses: the portable path below names it and dead-letters it.
        if (!ReplicatorError.isInstance(error) || error.code !== 'ROW_REJECTED') throw error
      }
    }
    await upsertSettingAside(
      tx,
      collection,
      description.primaryKey,
      upserts,
      (event) => event.after!,
      (event, message) => deadLetters.push(deadLetter(ctx, event, message, position)),
    )
    if (changes.deletes.size)
      await tx.deleteMany(
        collection,
        [...changes.deletes.values()].map((event) => event.key),
      )
  }
  const letters = { rows: deadLetters, dead: new Set<ChangeEvent>(), part: partNumber }
  for (const [collection, inOrder] of keyless) await applyKeyless(ctx, tx, collection, inOrder, position, letters)
  if (deadLetters.length) await tx.upsertMany(DEAD_LETTERS_COLLECTION, deadLetters)
  return tally(ctx, events, position, net, deadLetters, skipped, letters.dead)
}

/**
 * What applying `events` adds to the stats (dead-lettered and refused changes aside), as
 * figures: the events themselves are not kept until the commit.
 */
function tally(
  ctx: RuleContext,
  events: ChangeEvent[],
  position: Position,
  net: Map<string, { primaryKey: string[] }>,
  deadLetters: Row[],
  skipped: Set<string>,
  deadEvents: Set<ChangeEvent>,
): () => void {
  const dead = new Set(deadLetters.map((letter) => letter.id))
  const counted = new Map<string, { created: number; updated: number; deleted: number; deadLettered: number }>()
  const of = (collection: string) => {
    let counts = counted.get(collection)
    if (!counts) counted.set(collection, (counts = { created: 0, updated: 0, deleted: 0, deadLettered: 0 }))
    return counts
  }
  for (const event of events) {
    if (event.op === 't') continue // a truncate is not a row
    if (deadEvents.has(event)) continue
    const keyed = net.get(event.collection)
    if (keyed && dead.size && dead.has(deadLetterId(ctx, event, position))) continue
    if (keyed && skipped.size) {
      const primaryKey = keyed.primaryKey
      if (
        skipped.has(
          `${event.collection}\u0000${keyIdentity(keyToObject(event.key, primaryKey, event.collection), primaryKey)}`,
        )
      )
        continue
    }
    const counts = of(event.collection)
    if (event.op === 'c' || event.op === 'r') counts.created++
    else if (event.op === 'u') counts.updated++
    else counts.deleted++
  }
  for (const letter of deadLetters) of(String(letter.collection)).deadLettered++
  return () => {
    for (const [collection, counts] of counted) {
      ctx.stats.created += counts.created
      ctx.stats.updated += counts.updated
      ctx.stats.deleted += counts.deleted
      ctx.stats.recordsSynced += counts.created + counts.updated + counts.deleted
      ctx.stats.deadLettered += counts.deadLettered
      ctx.stats.errors += counts.deadLettered
      const detail = ctx.perCollection.get(collection)
      if (detail) {
        detail.created += counts.created
        detail.updated += counts.updated
        detail.deleted += counts.deleted
        detail.deadLettered += counts.deadLettered
      }
    }
  }
}

import {
  ReplicatorError,
  type ChangeEvent,
  type DialectOperations,
  type Position,
  type Row,
} from '@mostajs/replicator-core'
import { deadLetter } from './dead-letters.js'
import { DEAD_LETTERS_COLLECTION, markCopied } from './internal-tables.js'
import type { RuleContext } from './rule-context.js'
import { addColumnsOfRows, addColumnsOfSource } from './schema-evolution.js'

// Tables without a primary key. Equal rows are copies, so a change applied twice would double
// a row: the copy is read exactly at a log position (the cut), its changes up to the cut are
// dropped from the stream, and each later change touches one row found by all of its values.

/** Rows written to the target per INSERT statement of a copy. */
const INSERT_CHUNK = 1000

/**
 * Replaces the target table with the source's rows, read whole at one log position (or, in
 * `snapshot` mode, as they are), with the copy's record, in one target transaction.
 */
export async function copyExact(ctx: RuleContext, collection: string): Promise<void> {
  const capture = ctx.config.mode === 'snapshot' ? undefined : ctx.source.capture
  const { rows, cut } = capture?.readExact
    ? await capture.readExact(ctx.config.name, collection)
    : { rows: await ctx.source.find(collection), cut: null }
  await addColumnsOfSource(ctx, collection)
  await addColumnsOfRows(ctx, collection, rows)
  const target = requireKeylessWrites(ctx)
  const position = cut ?? { dialect: ctx.source.name, value: 'snapshot' }
  const refused: Row[] = []
  await target.transaction(async (tx) => {
    refused.length = 0
    await ctx.lease.holdIn(tx)
    await tx.delete(collection, {})
    for (let start = 0; start < rows.length; start += INSERT_CHUNK) {
      const chunk = rows.slice(start, start + INSERT_CHUNK)
      try {
        await tx.insertMany!(collection, chunk)
      } catch (error) {
        if (!ReplicatorError.isInstance(error) || error.code !== 'ROW_REJECTED') throw error
        // one by one: the rows the target refuses are dead-lettered, the others copied
        for (const [index, row] of chunk.entries())
          await tx.insertMany!(collection, [row]).catch((rowError: unknown) => {
            if (!ReplicatorError.isInstance(rowError) || rowError.code !== 'ROW_REJECTED') throw rowError
            const event: ChangeEvent = {
              op: 'r',
              collection,
              key: {},
              after: row,
              source: { dialect: ctx.source.name, database: '', position, ts: Date.now() },
            }
            refused.push(deadLetter(ctx, event, rowError.message, position, `copy.${start + index}`))
          })
      }
    }
    if (refused.length) await tx.upsertMany(DEAD_LETTERS_COLLECTION, refused)
    if (ctx.config.mode !== 'snapshot') await markCopied(ctx, [collection], { tx, cut })
  })
  if (cut) ctx.cuts.set(collection, cut)
  else ctx.cuts.delete(collection)
  const detail = ctx.perCollection.get(collection)!
  detail.snapshotRows += rows.length - refused.length
  detail.deadLettered += refused.length
  ctx.stats.deadLettered += refused.length
  ctx.stats.errors += refused.length
  ctx.stats.recordsSynced += rows.length - refused.length
  ctx.observer.snapshotProgress?.({ rule: ctx.config.name, collection, done: rows.length, total: rows.length })
}

function requireKeylessWrites(ctx: RuleContext): RuleContext['target'] {
  const { target } = ctx
  if (target.insertMany && target.deleteOne && target.replaceOne) return target
  throw new ReplicatorError(
    'NOT_SUPPORTED',
    `Rule "${ctx.config.name}": the target (${target.name}) cannot write tables without a primary key.`,
  )
}

/** The events that are not in a keyless table's copy already (those at or before its cut). */
export function withoutCopied(ctx: RuleContext, events: ChangeEvent[]): ChangeEvent[] {
  const covers = ctx.source.capture?.covers
  if (!ctx.cuts.size || !covers) return events
  return events.filter((event) => {
    const cut = ctx.cuts.get(event.collection)
    return !cut || !covers.call(ctx.source.capture, cut, event.source.position)
  })
}

/**
 * Applies the changes of one keyless table in their order, in the open transaction: runs of
 * inserts in one statement, each update or delete on one row equal to the old one. An update
 * whose old row the target does not hold writes the new row (as an upsert would). Refused rows
 * are dead-lettered; `dead` collects their events.
 */
export async function applyKeyless(
  ctx: RuleContext,
  tx: DialectOperations,
  collection: string,
  events: ChangeEvent[],
  position: Position,
  letters: { rows: Row[]; dead: Set<ChangeEvent>; part: number },
): Promise<void> {
  const refuse = (event: ChangeEvent, message: string) => {
    letters.dead.add(event)
    letters.rows.push(deadLetter(ctx, event, message, position, `${letters.part}.${letters.dead.size}`))
  }
  const attempt = async (event: ChangeEvent, write: () => Promise<unknown>) => {
    try {
      await write()
    } catch (error) {
      if (!ReplicatorError.isInstance(error) || error.code !== 'ROW_REJECTED') throw error
      refuse(event, error.message)
    }
  }
  let inserts: ChangeEvent[] = []
  const flush = async () => {
    const run = inserts
    inserts = []
    if (!run.length) return
    try {
      await tx.insertMany!(
        collection,
        run.map((event) => event.after!),
      )
    } catch (error) {
      if (!ReplicatorError.isInstance(error) || error.code !== 'ROW_REJECTED') throw error
      // one by one, to set the refused rows aside and write the others
      for (const event of run) await attempt(event, () => tx.insertMany!(collection, [event.after!]))
    }
  }
  for (const event of events) {
    if (event.op === 'c' || event.op === 'r') {
      inserts.push(event)
      continue
    }
    await flush()
    if (event.op === 't') await tx.delete(collection, {})
    else if (!event.before) refuse(event, `${collection} has no primary key and the source sent no old row`)
    else if (event.op === 'd') await tx.deleteOne!(collection, event.before)
    else {
      // an image without some columns (unchanged TOASTed values) keeps the old ones
      const before = event.before
      const after: Row = { ...before }
      for (const [name, value] of Object.entries(event.after ?? {})) if (value !== undefined) after[name] = value
      await attempt(event, async () => {
        if (!(await tx.replaceOne!(collection, before, after))) await tx.insertMany!(collection, [after])
      })
    }
  }
  await flush()
}

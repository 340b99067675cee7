import type { ChangeBatch, Position } from '@mostajs/replicator-core'
import { applyBatch, transactionSlices } from './apply-batch.js'
import type { RuleContext } from './rule-context.js'

/** Events read from the source log at once (applied in slices of batchSize). */
const READ_AHEAD_EVENTS = 20_000

/** Where a pass over the source log ended. */
export interface StreamedBatches {
  /** The position of the last slice applied (`from` when none was). */
  position: Position | null
  /** Whether any change was read (when none, the rule is caught up). */
  changesSeen: boolean
}

/**
 * Applies every change the source capture holds after `from`, until it is caught up. Reads
 * wide (a log read can cost a scan of the retained log: PostgreSQL re-decodes from the slot's
 * restart point), applies in target transactions of about batchSize, each storing the offset,
 * and confirms to the source only what is committed on the target. The next batch is read
 * while one is applied.
 */
export async function streamBatches(context: RuleContext, from: Position | null): Promise<StreamedBatches> {
  const { config, observer, stats } = context
  const capture = context.source.capture!
  const { batchSize } = config
  const read = (after: Position | null) =>
    capture.read(config.name, { after, maxEvents: Math.max(batchSize, READ_AHEAD_EVENTS), lazyAfter: true })
  let position = from
  let changesSeen = false
  let next: Promise<ChangeBatch> | null = read(from)
  try {
    for (;;) {
      const batch: ChangeBatch = await next
      next = null
      if (!batch.position) break
      if (batch.caughtUp) {
        // nothing of this rule up to the source's current end: let the source forget it
        await capture.confirm(config.name, batch.position)
        break
      }
      // The source is asked for what follows this batch: nothing is confirmed before it is
      // applied. (Not while a transaction too large to hold is read in parts.)
      if (!batch.nextPart) {
        next = read(batch.position)
        next.catch(() => undefined) // its failure is reported when it is awaited
      }
      if (batch.events.length) {
        changesSeen = true
        for (const slice of transactionSlices(batch.events, batchSize)) {
          const sliceStarted = performance.now()
          await applyBatch(context, slice.events, slice.position, batch.nextPart)
          position = slice.position
          const newestOfSlice = slice.events[slice.events.length - 1]!
          observer.batchApplied?.({
            rule: config.name,
            events: slice.events.length,
            durationMs: performance.now() - sliceStarted,
            lagMs: Math.max(0, Date.now() - newestOfSlice.source.ts),
          })
        }
        const newest = batch.events[batch.events.length - 1]!
        stats.lagMs = Math.max(0, Date.now() - newest.source.ts)
      }
      // also when only transactions the target already had were read: move the source past them
      await capture.confirm(config.name, batch.position)
      next ??= read(batch.position)
    }
  } finally {
    // A failed apply never leaves a read running behind it (it would hold the capture).
    if (next) await next.catch(() => undefined)
  }
  return { position, changesSeen }
}

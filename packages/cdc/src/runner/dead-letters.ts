import { createHash } from 'node:crypto'
import { describeKey, type ChangeEvent, type Position, type Row } from '@mostajs/replicator-core'
import type { RuleContext } from './rule-context.js'

/** JSON of an event that keeps bigint, Buffer and Date readable. */
function eventJson(event: ChangeEvent): string {
  return JSON.stringify(event, (key, value: unknown) => {
    if (key === 'nativeAfter') return undefined // the same row as `after`
    if (typeof value === 'bigint') return value.toString()
    if (
      value &&
      typeof value === 'object' &&
      (value as { type?: string }).type === 'Buffer' &&
      Array.isArray((value as { data?: unknown }).data)
    ) {
      return { $binary: Buffer.from((value as { data: number[] }).data).toString('base64') }
    }
    return value
  })
}

/** Longest dead-letter id (the column is varchar(255)). */
const MAX_ID = 255

/**
 * Id of the dead letter of one event: readable (`rule:position:collection:key`), and when that
 * is too long, its beginning plus a hash of the whole, so two letters never share one.
 */
export function deadLetterId(ctx: RuleContext, event: ChangeEvent, position: Position, ordinal?: string): string {
  // a table without a key: its events have no key to tell them apart, their ordinal does
  const key = ordinal === undefined ? describeKey(event.key) : `#${ordinal}`
  const id = `${ctx.config.name}:${JSON.stringify(position.value)}:${event.collection}:${key}`
  if (id.length <= MAX_ID) return id
  return `${id.slice(0, MAX_ID - 65)}#${createHash('sha256').update(id).digest('hex')}`
}

export function deadLetter(
  ctx: RuleContext,
  event: ChangeEvent,
  message: string,
  position: Position,
  ordinal?: string,
): Row {
  return {
    id: deadLetterId(ctx, event, position, ordinal),
    rule: ctx.config.name,
    collection: event.collection,
    row_key: describeKey(event.key),
    event: eventJson(event),
    error: message,
    at: new Date(),
  }
}

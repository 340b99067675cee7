import {
  keyIdentity,
  keyToObject,
  nativeRowComplete,
  type ChangeEvent,
  type CollectionDescription,
  type DialectOperations,
} from '@mostajs/replicator-core'
import type { NetChanges } from './conflicts.js'
import { rowsByKey } from './row-compare.js'

/** True when an upsert's image lacks values the source did not resend. */
function incomplete(event: ChangeEvent, description: CollectionDescription): boolean {
  if (event.nativeAfter) return !nativeRowComplete(event.nativeAfter)
  const after = event.after ?? {}
  return description.columns.some((column) => !(column.name in after))
}

/**
 * A primary-key change arrives as the delete of the old key and an upsert of the new one,
 * whose image lacks the values PostgreSQL did not resend (unchanged TOASTed columns). Those
 * are taken from the target's row at the old key, still there (deletes are applied after the
 * upserts), in the same transaction, so the moved row keeps them instead of getting NULLs.
 */
export async function completeMovedRows(
  tx: DialectOperations,
  collection: string,
  changes: NetChanges,
  description: CollectionDescription,
): Promise<void> {
  const moved: Array<[string, ChangeEvent]> = []
  for (const entry of changes.upserts) {
    if (entry[1].movedFrom !== undefined && incomplete(entry[1], description)) moved.push(entry)
  }
  if (!moved.length) return
  const { primaryKey } = changes
  const oldRows = await rowsByKey(
    tx,
    collection,
    moved.map(([, event]) => event.movedFrom!),
    primaryKey,
  )
  for (const [identity, event] of moved) {
    const old = oldRows.get(keyIdentity(keyToObject(event.movedFrom!, primaryKey, collection), primaryKey))
    if (!old) continue
    // a plain event with a complete portable image (no native row: it lacked those values)
    const completed: ChangeEvent = {
      op: event.op,
      collection: event.collection,
      key: event.key,
      before: event.before ?? null,
      after: { ...old, ...event.after },
      source: event.source,
      ...(event.txId === undefined ? {} : { txId: event.txId }),
    }
    changes.upserts.set(identity, completed)
  }
}

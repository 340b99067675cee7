import { keyIdentity, keyToObject, ReplicatorError, type DialectOperations, type Row } from '@mostajs/replicator-core'

/**
 * Upserts the rows of `items`, setting aside those the target refuses: each ROW_REJECTED names
 * some refused rows (at most a hundred); they go to `refuse` with the target's reason and the
 * rest is tried again. Every round removes at least one item, or the error is thrown. Returns
 * how many rows were written.
 */
export async function upsertSettingAside<T>(
  target: DialectOperations,
  collection: string,
  primaryKey: string[],
  items: T[],
  rowOf: (item: T) => Row,
  refuse: (item: T, message: string) => void,
): Promise<number> {
  let pending = items
  while (pending.length) {
    try {
      await target.upsertMany(collection, pending.map(rowOf))
      break
    } catch (error) {
      const failures =
        ReplicatorError.isInstance(error) && error.code === 'ROW_REJECTED' ? error.details.failures : null
      if (!Array.isArray(failures) || !failures.length) throw error
      const refused = new Map(
        (failures as Array<{ key: unknown; message: string }>).map((failure) => [
          keyIdentity(keyToObject(failure.key, primaryKey, collection), primaryKey),
          failure.message,
        ]),
      )
      const before = pending.length
      pending = pending.filter((item) => {
        const message = refused.get(keyIdentity(rowOf(item), primaryKey))
        if (message === undefined) return true
        refuse(item, message)
        return false
      })
      if (pending.length === before) throw error // named rows that are not in the batch: no progress
    }
  }
  return pending.length
}

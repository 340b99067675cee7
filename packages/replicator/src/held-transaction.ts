import type { Dialect, DialectOperations } from '@mostajs/replicator-core'

/** A transaction opened on a dialect and held open until `end` (for drivers that send BEGIN and COMMIT themselves). */
export interface HeldTransaction {
  /** The operations of the open transaction. */
  readonly tx: DialectOperations
  /** Commits (`commit`) or rolls back, and waits for the database's answer (a failed COMMIT rejects). */
  end(commit: boolean): Promise<void>
}

/** Thrown into the transaction callback to roll it back (the dialect may wrap it: see `isRollback`). */
const ROLLBACK = new Error('rolled back by its holder')

function isRollback(error: unknown): boolean {
  return error === ROLLBACK || (error instanceof Error && error.cause === ROLLBACK)
}

/**
 * Opens a transaction with `dialect.transaction` (so a guarded service fences it and records
 * it in the session like any write) and keeps it open between calls: query builders (Kysely,
 * Drizzle) open, use and end transactions in separate steps. `prepare` runs first inside it
 * (`SET TRANSACTION …`); a failure there fails the opening.
 */
export async function holdTransaction(
  dialect: Dialect,
  prepare: (tx: DialectOperations) => Promise<void> = async () => undefined,
): Promise<HeldTransaction> {
  let opened!: (tx: DialectOperations) => void
  let failedToOpen!: (error: unknown) => void
  const ready = new Promise<DialectOperations>((resolve, reject) => {
    opened = resolve
    failedToOpen = reject
  })
  let finish!: (commit: boolean) => void
  const ended = new Promise<void>((commit, rollback) => {
    finish = (ok) => (ok ? commit() : rollback(ROLLBACK))
  })
  const done = dialect
    .transaction(async (inner) => {
      await prepare(inner)
      opened(inner)
      await ended // held open until `end`
    })
    .catch((error: unknown) => {
      if (!isRollback(error)) throw error
    })
  done.catch(failedToOpen) // before it opened, the opening fails; after, `end` reports it
  const tx = await ready
  return {
    tx,
    end: async (commit) => {
      finish(commit)
      await done
    },
  }
}

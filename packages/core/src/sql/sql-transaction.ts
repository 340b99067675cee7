import type { SqlExecutor } from './sql-flavor.js'

/** A connection taken from a pool for one transaction. */
export interface TransactionConnection {
  /** Executor bound to this connection (`inTransaction: true`). */
  executor: SqlExecutor
  /** Gives the connection back; `broken` when it must be discarded (its ROLLBACK failed). */
  release(broken: boolean): void
}

/**
 * Runs `fn` between `begin` and COMMIT on one connection, rolling back when it throws, and
 * always releases the connection (discarding it when even ROLLBACK failed).
 */
export async function runTransactionOn<T>(
  connection: TransactionConnection,
  begin: string,
  fn: (executor: SqlExecutor) => Promise<T>,
): Promise<T> {
  let broken = false
  try {
    await connection.executor.execute(begin, [])
    const result = await fn(connection.executor)
    await connection.executor.execute('COMMIT', [])
    return result
  } catch (error) {
    await connection.executor.execute('ROLLBACK', []).catch(() => {
      broken = true
    })
    throw error
  } finally {
    connection.release(broken)
  }
}

/**
 * `INSERT … ON CONFLICT (key) DO UPDATE SET c = <excluded>.c` as PostgreSQL and SQLite spell
 * it (`DO NOTHING` when every column is part of the key). Names are already quoted.
 */
export function onConflictUpsertSql(
  table: string,
  columns: string[],
  key: string[],
  valuesSql: string,
  excluded: string,
): string {
  const keySet = new Set(key)
  const updates = columns.filter((column) => !keySet.has(column)).map((column) => `${column} = ${excluded}.${column}`)
  const onConflict = updates.length ? `DO UPDATE SET ${updates.join(', ')}` : 'DO NOTHING'
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${valuesSql} ON CONFLICT (${key.join(', ')}) ${onConflict}`
}

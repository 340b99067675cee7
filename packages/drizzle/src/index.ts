import type { DrizzleConfig } from 'drizzle-orm'
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres'
import type pg from 'pg'
import { holdTransaction, isReadOnlySql, type HeldTransaction, type ReplicationManager } from '@mostajs/replicator'
import { ReplicatorError, type Dialect, type ExecuteOptions } from '@mostajs/replicator-core'

/**
 * A Drizzle database (node-postgres flavour) over a ReplicationManager project: each read
 * goes to the replica `resolveReadService` picks (a healthy slave within its lag tolerance, one
 * that applied the session's writes inside `withSession`, else the master); writes, locking
 * reads and transactions go to the master through the manager's guarded services (fenced once
 * it is demoted, recorded in the session). PostgreSQL projects only.
 *
 * @example const db = replicatedDrizzle(rm, 'shop', { schema })
 */
export function replicatedDrizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  manager: ReplicationManager,
  project: string,
  config: Omit<DrizzleConfig<TSchema>, 'client'> = {},
): NodePgDatabase<TSchema> {
  // drizzle takes any client whose class name says Pool as a pool: it asks it for a client per transaction
  return drizzle({ ...config, client: new RoutedPool(manager, project) as unknown as pg.Pool })
}

/** A statement as node-postgres receives it: text, or a config object with driver settings. */
type Statement = string | (pg.QueryConfig & Record<string, unknown>)

function split(statement: Statement, values?: unknown[]): { text: string; params: unknown[]; options: ExecuteOptions } {
  if (typeof statement === 'string') return { text: statement, params: values ?? [], options: {} }
  const { text, values: given, ...driver } = statement
  return { text, params: values ?? given ?? [], options: { driver } }
}

/** What node-postgres answers, as far as drizzle reads it. */
function resultOf(rows: unknown[], affected: number, text: string) {
  return { rows, rowCount: affected, command: text.trim().split(/\s/, 1)[0]!.toUpperCase(), fields: [] }
}

/** Stands in for a `pg.Pool`: each statement runs on the replica the manager routes it to. */
class RoutedPool {
  constructor(
    private readonly manager: ReplicationManager,
    private readonly project: string,
  ) {}

  async query(statement: Statement, values?: unknown[]) {
    const { text, params, options } = split(statement, values)
    const service = isReadOnlySql(text)
      ? this.manager.resolveReadService(this.project)
      : this.manager.resolveWriteService(this.project)
    const { rows, affected } = await runOn(service.dialect, text, params, options)
    return resultOf(rows, affected, text)
  }

  /** A client for one transaction (drizzle sends its BEGIN, COMMIT or ROLLBACK through it). */
  async connect(): Promise<RoutedTransactionClient> {
    return new RoutedTransactionClient(this.manager.resolveWriteService(this.project).dialect)
  }

  async end(): Promise<void> {}
}

/** Runs a statement on a routed dialect, with the driver settings drizzle gave. */
async function runOn(dialect: Dialect, text: string, params: unknown[], options: ExecuteOptions) {
  if (!dialect.execute) throw new ReplicatorError('NOT_SUPPORTED', `Drizzle: ${dialect.name} runs no raw SQL.`)
  return dialect.execute(text, params, options)
}

/**
 * The client of one drizzle transaction: BEGIN opens a transaction on the master that stays
 * open across statements, COMMIT and ROLLBACK end it (savepoints run inside it).
 */
class RoutedTransactionClient {
  private open: HeldTransaction | null = null

  constructor(private readonly master: Dialect) {}

  async query(statement: Statement, values?: unknown[]) {
    const { text, params, options } = split(statement, values)
    const verb = text.trim().toLowerCase()
    if (/^(begin|start\s+transaction)\b/.test(verb)) {
      const settings = verb.replace(/^(begin|start\s+transaction)\s*/, '')
      this.open = await holdTransaction(this.master, async (tx) => {
        if (settings) await tx.query(`SET TRANSACTION ${settings}`) // isolation level, access mode
      })
      return resultOf([], 0, text)
    }
    const ending = /^(commit|end)\b/.test(verb) ? true : /^rollback\b(?!\s+to\b)/.test(verb) ? false : null
    if (ending !== null) {
      const open = this.open
      this.open = null
      await open?.end(ending)
      return resultOf([], 0, text)
    }
    if (!this.open) throw new ReplicatorError('CONFIG_INVALID', 'Drizzle: a statement came outside its transaction.')
    const { rows, affected } = await this.open.tx.execute!(text, params, options)
    return resultOf(rows, affected, text)
  }

  /** Ends a transaction drizzle left open (it always ends its own): rolled back. */
  release(): void {
    const open = this.open
    this.open = null
    // nobody awaits a release: a failed rollback already discarded its connection (runTransactionOn)
    void open?.end(false).catch(() => undefined)
  }
}

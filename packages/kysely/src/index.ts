import {
  MysqlAdapter,
  MysqlIntrospector,
  MysqlQueryCompiler,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect as KyselyDialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely'
import { holdTransaction, isReadOnlySql, type HeldTransaction, type ReplicationManager } from '@mostajs/replicator'
import {
  dialectDescriptor,
  ReplicatorError,
  type DialectOperations,
  type ExecuteResult,
  type SqlFamily,
} from '@mostajs/replicator-core'

/** The SQL a Kysely instance compiles to: that of the project's databases. */
export type { SqlFamily }

export interface ReplicatedDialectOptions {
  manager: ReplicationManager
  /** The project whose replicas serve the queries. */
  project: string
  /** The SQL to compile to; default: the master's database (`mariadb` compiles as `mysql`). */
  sql?: SqlFamily
}

/**
 * A Kysely dialect over a ReplicationManager project: each SELECT goes to the replica
 * `resolveReadService` picks (a healthy slave within its lag tolerance, one that applied the
 * session's writes inside `withSession`, else the master); writes and transactions go to the
 * master. Queries never bypass the manager: a demoted master's writes fail with FENCED, a
 * write that reaches a slave fails with READ_ONLY.
 *
 * @example const db = new Kysely<Database>({ dialect: new ReplicatedDialect({ manager: rm, project: 'shop' }) })
 */
export class ReplicatedDialect implements KyselyDialect {
  constructor(private readonly options: ReplicatedDialectOptions) {}

  private get family(): SqlFamily {
    if (this.options.sql) return this.options.sql
    const master = this.options.manager
      .getReplicaStatus(this.options.project)
      .find((replica) => replica.role === 'master')
    const family = master && dialectDescriptor(master.dialect)?.sqlFamily
    if (!family)
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `Kysely: project "${this.options.project}" has no master of a known SQL kind; add its master first, or pass { sql: 'postgres' | 'mysql' | 'sqlite' }.`,
      )
    return family
  }

  createDriver(): Driver {
    return new ReplicatedDriver(this.options)
  }

  createQueryCompiler(): QueryCompiler {
    const family = this.family
    if (family === 'postgres') return new PostgresQueryCompiler()
    return family === 'mysql' ? new MysqlQueryCompiler() : new SqliteQueryCompiler()
  }

  createAdapter(): DialectAdapter {
    const family = this.family
    if (family === 'postgres') return new PostgresAdapter()
    return family === 'mysql' ? new MysqlAdapter() : new SqliteAdapter()
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    const family = this.family
    if (family === 'postgres') return new PostgresIntrospector(db)
    return family === 'mysql' ? new MysqlIntrospector(db) : new SqliteIntrospector(db)
  }
}

class ReplicatedDriver implements Driver {
  constructor(private readonly options: ReplicatedDialectOptions) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return new RoutedConnection(this.options)
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await (connection as RoutedConnection).begin(settings)
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await (connection as RoutedConnection).end(true)
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await (connection as RoutedConnection).end(false)
  }

  async releaseConnection(): Promise<void> {}

  async destroy(): Promise<void> {}
}

/** A query a replica may serve: a SELECT (or raw SQL) that writes nothing and takes no row lock (isReadOnlySql). */
function readsOnly(query: CompiledQuery): boolean {
  const kind = query.query.kind
  if (kind !== 'SelectQueryNode' && kind !== 'RawNode') return false
  return isReadOnlySql(query.sql)
}

/**
 * One Kysely connection: outside a transaction each query picks its replica when it runs;
 * inside one, every query runs in the master transaction it opened.
 */
class RoutedConnection implements DatabaseConnection {
  private transaction: HeldTransaction | null = null

  constructor(private readonly options: ReplicatedDialectOptions) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const { manager, project } = this.options
    const target =
      this.transaction?.tx ??
      (readsOnly(query) ? manager.resolveReadService(project) : manager.resolveWriteService(project)).dialect
    if (!target.execute)
      throw new ReplicatorError('NOT_SUPPORTED', `Kysely: the databases of project "${project}" run no raw SQL.`)
    return toQueryResult<R>(await target.execute(query.sql, [...query.parameters]), query)
  }

  async *streamQuery<R>(query: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    yield await this.executeQuery<R>(query) // read whole: the routed dialects hold no cursor
  }

  /**
   * Opens a transaction on the master through the manager (so it is fenced and recorded in
   * the session like any write) and keeps it open until `end`.
   */
  async begin(settings: TransactionSettings): Promise<void> {
    const master = this.options.manager.resolveWriteService(this.options.project).dialect
    this.transaction = await holdTransaction(master, (tx) => applySettings(tx, settings))
  }

  /** Commits (`commit`) or rolls back the open transaction and waits for the master's answer. */
  async end(commit: boolean): Promise<void> {
    const open = this.transaction
    this.transaction = null
    await open?.end(commit)
  }
}

async function applySettings(tx: DialectOperations, settings: TransactionSettings): Promise<void> {
  const parts = [
    settings.isolationLevel && `ISOLATION LEVEL ${settings.isolationLevel.toUpperCase()}`,
    settings.accessMode?.toUpperCase(),
  ].filter(Boolean)
  if (parts.length) await tx.query(`SET TRANSACTION ${parts.join(', ')}`)
}

function toQueryResult<R>(result: ExecuteResult, query: CompiledQuery): QueryResult<R> {
  const kind = query.query.kind
  const wrote =
    kind === 'InsertQueryNode' || kind === 'UpdateQueryNode' || kind === 'DeleteQueryNode' || kind === 'MergeQueryNode'
  return {
    rows: result.rows as R[],
    ...(wrote || (kind === 'RawNode' && !isReadOnlySql(query.sql)) ? { numAffectedRows: BigInt(result.affected) } : {}),
    ...(wrote && result.insertId !== undefined ? { insertId: BigInt(result.insertId) } : {}),
  }
}

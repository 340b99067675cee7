// For dialect authors: the SQL engine the PostgreSQL, MySQL/MariaDB and SQLite dialects share
// (a flavour of quoting, parameters and value conversion; filter compilation; SqlDialect,
// SqlOperations, transactions, the heartbeat table). An application needs none of it.
export {
  columnDecoder,
  columnEncoder,
  encodeValue,
  quoteWith,
  type SqlErrorKind,
  type SqlExecuteOptions,
  type SqlExecutor,
  type SqlFlavor,
  type SqlResult,
  type ValueConverter,
} from './sql-flavor.js'
export { compileFilter, compileSort, requireColumn, SqlParams } from './compile-filter.js'
export { SqlOperations } from './sql-operations.js'
export { SqlDialect, type CachedStatement } from './sql-dialect.js'
export { onConflictUpsertSql, runTransactionOn, type TransactionConnection } from './sql-transaction.js'
export { SqlHeartbeat } from './sql-heartbeat.js'

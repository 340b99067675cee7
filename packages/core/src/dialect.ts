import type { Readable } from 'node:stream'
import type { Filter, FindOptions, UpdateChanges } from './filter.js'
import type { NativeRow } from './native-row.js'
import type { CollectionDescription, CollectionSchema, ColumnSchema, EntitySchema, Row, RowKey } from './schema.js'

/** Connection settings given to a dialect factory. Only what the dialects use. */
export interface DialectConfig {
  /** Registered dialect name: `postgres` (`postgresql`), `mysql`, `mariadb`, `sqlite`. */
  dialect: string
  /** Connection URI (`postgres://…`, `mysql://…`, `mariadb://…`) or SQLite file path / `sqlite:` URI / `:memory:`. */
  uri: string
  pool?: { min?: number; max?: number; idleTimeoutMs?: number }
  /** How long connect() may take before it fails with CONNECTION_FAILED (default 5000 ms). */
  connectTimeoutMs?: number
  /** Memory limits of change capture (see {@link CaptureSettings}). */
  capture?: CaptureSettings
}

/** Memory limits of change capture; each has a default. */
export interface CaptureSettings {
  /** Changes of one source transaction held in memory before it goes to a spill file (default 100,000). */
  spillAfterChanges?: number
  /** Directory of spill files (default the system's temporary directory). */
  spillDirectory?: string
  /** MariaDB/MySQL: binlog events buffered before reading pauses (default 100,000). */
  binlogBufferEvents?: number
}

/**
 * How a dialect's SQL behaves. Unset flags take the defaults of {@link DEFAULT_CAPABILITIES}.
 * What a dialect can do beyond CRUD is told by its optional members instead (`capture`,
 * `heartbeat`, `replication`, `bulk`): present exactly when available.
 */
export interface DialectCapabilities {
  /** INSERT … RETURNING is available. */
  supportsReturning: boolean
  /** DDL inside a transaction rolls back with it. */
  transactionalDdl: boolean
  /** `query(sql, params)` is available. */
  sql: boolean
  /** Largest number of bound parameters in one statement. */
  maxParameters: number
}

/** Defaults of {@link DialectCapabilities}: the most conservative values. */
export const DEFAULT_CAPABILITIES: DialectCapabilities = {
  supportsReturning: false,
  transactionalDdl: false,
  sql: false,
  maxParameters: 999,
}

/** Keyset pagination request: rows with a primary key strictly after `after`, in key order. */
export interface ScanOptions {
  /** Key of the last row of the previous page (value, or object of key columns); omit for the first page. */
  after?: RowKey | null
  /** Page size (default 1000). */
  limit?: number
}

/** One page of a keyset scan. `next` is the key to pass as `after`, or null after the last page. */
export interface ScanPage {
  rows: Row[]
  next: RowKey | null
}

/**
 * A position in a database's change log: opaque, totally ordered, serialisable
 * (PostgreSQL LSN, binlog file+pos or GTID, SQLite changelog id).
 */
export interface Position {
  dialect: string
  /** Dialect-specific, JSON-serialisable value. */
  value: string | number | Record<string, unknown>
}

/**
 * A captured change, close to Debezium's envelope: `c` insert, `u` update, `d` delete, `r` a
 * snapshot read, `t` the collection was emptied (TRUNCATE; its `key` is null).
 */
export interface ChangeEvent {
  op: 'c' | 'u' | 'd' | 'r' | 't'
  collection: string
  key: RowKey
  before?: Row | null
  after?: Row | null
  /**
   * The same after-image in the source's own text (see `NativeRow`), when the source dialect
   * has a `nativeTextFormat`: a target of that format applies it without decoding it.
   */
  nativeAfter?: NativeRow
  source: { dialect: string; database: string; position: Position; ts: number }
  txId?: string
  /**
   * The key the row had before, when this upsert follows the delete of a primary-key change.
   * Its after-image may lack values the source did not resend (unchanged TOASTed columns):
   * the apply takes them from the target's row at that key.
   */
  movedFrom?: RowKey
}

/** What a capture records. */
export interface CaptureOptions {
  /** Capture name (one per replication rule): names the slot, publication or triggers. */
  name: string
  /** Collections whose changes are captured. */
  collections: string[]
}

/** Options of `readChanges`. */
export interface ReadChangesOptions {
  after: Position | null
  /** Soft limit: whole transactions are returned, so a batch may hold more. */
  maxEvents: number
  /**
   * The events may compute `after` on first read, from a prototype getter (PostgreSQL): much
   * cheaper when the caller applies `nativeAfter` instead, but such events are not plain
   * objects (a spread drops `after`). For the rule runner; default false.
   */
  lazyAfter?: boolean
}

/** Changes of whole transactions, in commit order, and the position to confirm after applying them. */
export interface ChangeBatch {
  events: ChangeEvent[]
  /** Position after the last transaction returned (null when nothing was returned). */
  position: Position | null
  /**
   * Set when the batch is one source transaction too large to hold in memory (PostgreSQL
   * spills it to a temporary file): `events` is its first part, each call gives the next part
   * in order, null after the last. Apply every part in one target transaction, then confirm.
   */
  nextPart?: () => Promise<ChangeEvent[] | null>
  /**
   * Set (with no events) when the source has nothing of this capture up to `position`, its
   * current end: confirming it lets the source forget the log other tables wrote meanwhile, so
   * a quiet capture holds back no more of it than a busy one.
   */
  caughtUp?: boolean
}

/** Captured changes as an async iterable (see `openChangeStream` in @mostajs/replicator-cdc). */
export interface ChangeStream extends AsyncIterable<ChangeEvent> {
  close(): Promise<void>
}

/** A heartbeat as written on a master and read on a replica. */
export interface Heartbeat {
  sequence: bigint
  /** Server clock of the master when it was written. */
  at: Date
}

/** The table heartbeats are written to on masters (and replicated to slaves). */
export const HEARTBEAT_COLLECTION = '_replicator_heartbeat'

/** Its portable definition: one row per writer (`source`), holding its last sequence and the master's clock. */
export const HEARTBEAT_SCHEMA: CollectionSchema = {
  name: HEARTBEAT_COLLECTION,
  columns: [
    { name: 'source', type: 'string' },
    { name: 'sequence', type: 'bigint' },
    { name: 'at', type: 'timestamp' },
  ],
  primaryKey: ['source'],
}

/** See `Dialect.captureBacklog`. */
export interface CaptureBacklog {
  /** Bytes of log retained for the capture (PostgreSQL WAL held by the slot). */
  retainedBytes?: number
  /** Captured changes not yet confirmed (SQLite changelog rows). */
  pendingEvents?: number
  /**
   * PostgreSQL slot's `wal_status`: `unreserved` means the WAL it needs is about to be removed
   * (over `max_slot_wal_keep_size`), `lost` that it was (the rule re-seeds at its next sync).
   */
  walStatus?: 'reserved' | 'extended' | 'unreserved' | 'lost'
}

/** Native replication figures, where the database exposes them. */
export interface NativeReplicationStatus {
  role: 'primary' | 'replica' | 'standalone'
  /** The database's own lag figure (PostgreSQL replay timestamp age, MariaDB Seconds_Behind_Master). */
  lagMs?: number | null
  /** False when the replica stopped applying (paused replay, stopped SQL thread). */
  applying?: boolean
  /** Whether the replica's connection to its primary is up (PostgreSQL WAL receiver streaming, MariaDB IO thread). */
  receiving?: boolean
  [detail: string]: unknown
}

/**
 * The CRUD surface shared by a dialect and the transaction scope it passes to `transaction(fn)`.
 * Filters use the @mostajs/orm subset; rows are portable JS values.
 */
export interface DialectOperations {
  find(collection: string, filter?: Filter, options?: FindOptions): Promise<Row[]>
  findOne(collection: string, filter?: Filter, options?: Omit<FindOptions, 'limit'>): Promise<Row | null>
  count(collection: string, filter?: Filter): Promise<number>
  /** Inserts one row and returns it as stored (with generated keys). */
  insert(collection: string, row: Row): Promise<Row>
  /** Updates every row matching `filter` (`$set` and `$inc`); returns the number of rows changed. */
  update(collection: string, filter: Filter, changes: UpdateChanges): Promise<number>
  /** Deletes every row matching `filter`; returns the number of rows deleted. */
  delete(collection: string, filter: Filter): Promise<number>
  /**
   * Inserts or replaces rows by primary key, one statement per batch; the same batch applied
   * twice leaves the same rows. A rejected row fails the whole batch with ROW_REJECTED naming
   * the failing key(s); nothing of the batch is written.
   */
  upsertMany(collection: string, rows: Row[]): Promise<number>
  /**
   * `upsertMany` for rows in this dialect's `nativeTextFormat`, written without decoding; their
   * columns must fit the table (`nativeColumnsFit`) and their keys be distinct. A rejected row
   * fails the batch with ROW_REJECTED without naming it: `upsertMany` of the same rows does.
   * `fresh`: the rows are expected to be new (captured inserts): inside a transaction they may
   * be bulk-loaded (PostgreSQL COPY), falling back to the upsert when a key exists already.
   */
  upsertNative?(collection: string, rows: NativeRow[], options?: { fresh?: boolean }): Promise<number>
  /** Deletes rows by primary key (values or key objects) in one statement per batch. */
  deleteMany(collection: string, keys: RowKey[]): Promise<number>
  /**
   * For tables without a primary key. Inserts rows as they are, all or nothing: a rejected row
   * fails the call with ROW_REJECTED and nothing of it is written.
   */
  insertMany?(collection: string, rows: Row[]): Promise<number>
  /**
   * For tables without a primary key: deletes one row equal to `row` in each column it gives
   * (NULL equals NULL), one copy when several are equal. Returns 1, or 0 when none is.
   */
  deleteOne?(collection: string, row: Row): Promise<number>
  /** Like `deleteOne`, but replaces that row with `after`; all or nothing. Returns 1, or 0. */
  replaceOne?(collection: string, before: Row, after: Row): Promise<number>
  /** One keyset page ordered by primary key. */
  scan(collection: string, options?: ScanOptions): Promise<ScanPage>
  /** Raw SQL on SQL dialects (placeholders in the database's own style); rows as the driver returns them. */
  query<T = Row>(sql: string, params?: unknown[]): Promise<T[]>
  /** `query` with what a query builder also needs: the rows a write changed, and its generated key where the driver gives one. */
  execute?(sql: string, params?: unknown[], options?: ExecuteOptions): Promise<ExecuteResult>
}

/** Options of `execute`. */
export interface ExecuteOptions {
  /** Settings handed to the driver with the statement (node-postgres: `rowMode`, `types`); others ignore them. */
  driver?: Record<string, unknown>
}

/** What `execute` returns. */
export interface ExecuteResult {
  rows: Row[]
  /** Rows inserted, updated or deleted (PostgreSQL: also the rows a SELECT returned). */
  affected: number
  /** The generated key of a single-row insert (MySQL/MariaDB `insertId`, SQLite `lastInsertRowid`). */
  insertId?: number | bigint
}

/**
 * The contract every database dialect implements. Obtain one with `createDialect(config)`
 * after importing the dialect package, then `await dialect.connect()`.
 *
 * @example
 * import '@mostajs/replicator-dialect-sqlite'
 * const db = createDialect({ dialect: 'sqlite', uri: './app.db' })
 * await db.connect()
 * await db.ensureCollection({ name: 'users', columns: [{ name: 'id', type: 'integer' }, { name: 'email', type: 'string' }], primaryKey: ['id'] })
 * await db.upsertMany('users', [{ id: 1, email: 'a@example.com' }])
 */
export interface Dialect extends DialectOperations {
  /** Registered name (`postgres`, `mysql`, `mariadb`, `sqlite`). */
  readonly name: string
  /** The connection URI with its password masked. */
  readonly maskedUri: string
  readonly capabilities: DialectCapabilities
  /** Opens the pool and checks the server answers; CONNECTION_FAILED within `connectTimeoutMs` otherwise. */
  connect(): Promise<void>
  close(): Promise<void>
  /** Round trip to the server; resolves with the latency in ms, rejects when unreachable. */
  ping(): Promise<number>
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: DialectOperations) => Promise<T>): Promise<T>
  /** Alias of `transaction`, as the @mostajs/orm dialects spell it. */
  $transaction<T>(fn: (tx: DialectOperations) => Promise<T>): Promise<T>
  listCollections(): Promise<string[]>
  /** Columns, portable types and primary key of a table; COLLECTION_NOT_FOUND when missing. */
  describeCollection(collection: string): Promise<CollectionDescription>
  /** Creates the table when missing (idempotent); an existing table is left as it is. */
  ensureCollection(schema: CollectionSchema | EntitySchema): Promise<CollectionDescription>
  /**
   * Adds the columns a table lacks (always nullable: existing rows have no value) and returns
   * its new description; columns it has are left as they are. For schema changes carried
   * from a source.
   */
  ensureColumns(collection: string, columns: ColumnSchema[]): Promise<CollectionDescription>
  /** Forgets cached table descriptions (all, or one collection): the next read describes again. */
  invalidateCatalog(collection?: string): void

  // Optional capabilities: a member is present exactly when the database has the capability.
  /** Log-based change capture (rules, managed replicas, `openChangeStream`). */
  readonly capture?: ChangeCapture
  /** The heartbeat row the manager measures replication lag with. */
  readonly heartbeat?: HeartbeatStore
  /** The database's own replication: status, promotion, read-only, re-pointing. */
  readonly replication?: NativeReplication
  /** Bulk copy of whole tables in the database's own format (snapshots into an empty table). */
  readonly bulk?: BulkCopy

  /** Name of the native text form of this database's values (see `NativeRow`), when it has one. */
  readonly nativeTextFormat?: string
}

/**
 * Log-based change capture. Pull + confirm: changes stay in the source's log until the
 * consumer confirms them after they are durably applied, so a crash can never lose any.
 */
export interface ChangeCapture {
  /** Creates what capture `name` needs (slot + publication, triggers + changelog); idempotent. */
  setup(options: CaptureOptions): Promise<void>
  /** Removes capture `name` and everything it holds on the source (slot, publication, triggers). */
  drop(name: string): Promise<void>
  /** Reads complete transactions captured after `after` (null: from the capture's start), without consuming them. */
  read(name: string, options: ReadChangesOptions): Promise<ChangeBatch>
  /** Lets the source forget changes up to `position` (they were applied). */
  confirm(name: string, position: Position): Promise<void>
  /**
   * What the source still holds for capture `name` (null when it does not exist): log bytes a
   * slot keeps from being recycled, or changelog rows not yet confirmed. For monitoring.
   */
  backlog(name: string): Promise<CaptureBacklog | null>
  /**
   * The collections among `collections` this capture cannot carry faithfully, with the reason
   * (PostgreSQL: a REPLICA IDENTITY that does not give the primary key of deleted rows).
   */
  uncapturable?(collections: string[]): Promise<Array<{ collection: string; reason: string }>>
  /**
   * For a table without a primary key (where replaying a change twice would double it): its
   * rows, read whole while its writers wait, and the cut — the log position that read stands
   * at (see `covers`). A null cut: this capture will not deliver the changes the read holds.
   */
  readExact?(name: string, collection: string): Promise<{ rows: Row[]; cut: Position | null }>
  /** True when a change committed at `position` is already in the rows of a `readExact` whose cut is `cut`. */
  covers?(cut: Position, position: Position): boolean
}

/** The heartbeat row (`_replicator_heartbeat`), one per writer. */
export interface HeartbeatStore {
  /**
   * Writes heartbeat `sequence` of writer `source` with the server clock; returns it as stored.
   * `evenIfReadOnly`: the final heartbeat of a fenced master, written after it turned read-only.
   */
  write(sequence: bigint, source?: string, options?: { evenIfReadOnly?: boolean }): Promise<Heartbeat>
  /** The newest heartbeat of writer `source` this database holds (written here or replicated), or null. */
  read(source?: string): Promise<Heartbeat | null>
  /** The newest heartbeat of every writer this database holds, by writer (one read). */
  readAll?(): Promise<Map<string, Heartbeat>>
}

/** The database's own replication, where it has it. */
export interface NativeReplication {
  /** Replay position and lag as the database reports them. */
  status(): Promise<NativeReplicationStatus>
  /** Turns a native replica into a writable primary (PostgreSQL pg_promote, MariaDB STOP/RESET SLAVE). */
  promote(): Promise<void>
  /** Refuses (true) or allows (false) writes at the database level. */
  setReadOnly(readOnly: boolean): Promise<void>
  /**
   * Ends every other client session of this database (its open transactions roll back); the
   * replication sessions are kept. Returns how many were ended. Used when fencing a master:
   * a transaction opened before it turned read-only cannot commit afterwards.
   */
  endSessions(): Promise<number>
  /** Makes this native replica follow another primary (given by its URI). */
  replicateFrom(primaryUri: string): Promise<void>
}

/**
 * Bulk copy of whole tables. Export and import pair only when both sides name the same
 * `format` (PostgreSQL: `postgres-copy-text`): the rows then pass through undecoded, as
 * `COPY … TO STDOUT | COPY … FROM STDIN` would carry them.
 */
export interface BulkCopy {
  readonly format: string
  /** The whole table's `columns` in `format`, as a stream (one consistent read). */
  export(collection: string, columns: string[]): Promise<Readable>
  /** Loads a `format` stream into `collection` in one statement; resolves with the row count. */
  import(collection: string, columns: string[], data: Readable, onRows?: (rowsSoFar: number) => void): Promise<number>
}

import { createHash } from 'node:crypto'
import {
  ReplicatorError,
  type CaptureBacklog,
  type CaptureOptions,
  type ChangeBatch,
  type ChangeCapture,
  type Position,
  type ReadChangesOptions,
  type Row,
} from '@mostajs/replicator-core'
import { formatLsn, parseLsn } from './pgoutput.js'
import { PgOutputDecoder, type CaptureStream } from './pgoutput-decoder.js'
import type { PostgresDialect } from './postgres-dialect.js'
import { ReplicationStream } from './replication-stream.js'

/** How long slot operations wait for a slot held by another (dying) session. */
const SLOT_BUSY_WAIT_MS = 15_000

/**
 * Change capture by logical decoding: a publication and a replication slot per capture, read
 * over the streaming replication protocol (or the SQL slot functions when the server refuses
 * replication connections). Positions are LSNs; a position is confirmed to the slot only
 * after the consumer applied it.
 */
export class PostgresCapture implements ChangeCapture {
  /** Captures read over the streaming replication protocol, by capture name. */
  private readonly streams = new Map<string, CaptureStream>()
  /** Captures whose replication connection the server refused: read with the SQL functions. */
  private readonly sqlCaptureOnly = new Set<string>()
  private canLogSnapshot: boolean | undefined
  private readonly decoder: PgOutputDecoder

  constructor(private readonly db: PostgresDialect) {
    this.decoder = new PgOutputDecoder(db)
  }

  /** Closes every replication stream (the dialect is closing). */
  async closeAll(): Promise<void> {
    for (const name of [...this.streams.keys()]) await this.closeStream(name)
  }

  /** Slot and publication of a capture: `replicator_<name>_<hash>` (slot names allow [a-z0-9_], 63 bytes). */
  private captureObjects(name: string): { slot: string; publication: string } {
    const safe = name
      .toLowerCase()
      .replace(/[^a-z0-9_]/g, '_')
      .slice(0, 40)
    const hash = createHash('sha1').update(name).digest('hex').slice(0, 8)
    const object = `replicator_${safe}_${hash}`
    return { slot: object, publication: object }
  }

  async setup(options: CaptureOptions): Promise<void> {
    const { slot, publication } = this.captureObjects(options.name)
    const q = (identifier: string) => this.db.flavor.quoteIdentifier(identifier)
    const keyless = await this.keylessWithoutFullIdentity(options.collections)
    if (keyless.length) {
      throw new ReplicatorError(
        'NOT_SUPPORTED',
        `[replicator:postgres] Collection "${keyless[0]}" has no primary key and logs no whole old rows; change capture needs one of them to apply updates and deletes: ALTER TABLE ${keyless[0]} REPLICA IDENTITY FULL, or add a primary key.`,
        { details: { collection: keyless[0] } },
      )
    }
    const tables = options.collections.map(q).join(', ')
    const existing = await this.db.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication])
    if (!existing.length)
      await this.db.query(`CREATE PUBLICATION ${q(publication)}${tables ? ` FOR TABLE ${tables}` : ''}`)
    else if (tables) {
      // Only touch a publication whose tables changed: SET TABLE drops and re-adds every table,
      // and changes decoded around that moment can be filtered out.
      const current = (
        await this.db.query<{ name: string }>(
          `SELECT tablename AS name FROM pg_publication_tables WHERE pubname = $1 AND schemaname = current_schema()`,
          [publication],
        )
      )
        .map((row) => row.name)
        .sort()
      const wanted = [...options.collections].sort()
      if (JSON.stringify(current) !== JSON.stringify(wanted)) {
        const added = wanted.filter((name) => !current.includes(name))
        const removed = current.filter((name) => !wanted.includes(name))
        if (added.length)
          await this.db.query(`ALTER PUBLICATION ${q(publication)} ADD TABLE ${added.map(q).join(', ')}`)
        if (removed.length)
          await this.db.query(`ALTER PUBLICATION ${q(publication)} DROP TABLE ${removed.map(q).join(', ')}`)
      }
    }
    const slots = await this.db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])
    if (!slots.length) await this.db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot])
  }

  /**
   * Runs a statement on a replication slot, waiting while another backend still holds it
   * (the session of a process that just died keeps it until PostgreSQL notices, usually in
   * well under a second).
   */
  private async onSlot<T>(slot: string, run: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + SLOT_BUSY_WAIT_MS
    for (;;) {
      try {
        return await run()
      } catch (error) {
        // 55006 object_in_use: from a query (wrapped) or from START_REPLICATION (raw driver error)
        const code = ReplicatorError.isInstance(error) ? error.details.driverCode : (error as { code?: string }).code
        const busy = code === '55006'
        if (!busy || Date.now() > deadline) {
          if (busy)
            throw new ReplicatorError(
              'QUERY_FAILED',
              `[replicator:postgres] Replication slot "${slot}" stayed in use by another session for ${SLOT_BUSY_WAIT_MS / 1000} s: is another process running the same rule?`,
              { cause: error },
            )
          throw error
        }
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }

  async drop(name: string): Promise<void> {
    await this.closeStream(name)
    const { slot, publication } = this.captureObjects(name)
    await this.onSlot(slot, () =>
      this.db.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [
        slot,
      ]),
    )
    await this.db.query(`DROP PUBLICATION IF EXISTS ${this.db.flavor.quoteIdentifier(publication)}`)
  }

  async backlog(name: string): Promise<CaptureBacklog | null> {
    const { slot } = this.captureObjects(name)
    const rows = await this.db.query<{ retained: string | null; status: CaptureBacklog['walStatus'] | null }>(
      'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text AS retained, wal_status AS status FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    )
    if (!rows.length) return null
    return { retainedBytes: Number(rows[0]!.retained ?? 0), ...(rows[0]!.status ? { walStatus: rows[0]!.status } : {}) }
  }

  /** The tables among `collections` without a primary key whose REPLICA IDENTITY is not FULL. */
  private async keylessWithoutFullIdentity(collections: string[]): Promise<string[]> {
    const keyless: string[] = []
    for (const collection of collections)
      if (!(await this.db.describeCollection(collection)).primaryKey.length) keyless.push(collection)
    if (!keyless.length) return []
    const full = await this.db.query<{ name: string }>(
      `SELECT relname AS name FROM pg_class WHERE relreplident = 'f' AND oid IN (SELECT to_regclass(quote_ident(t)) FROM unnest($1::text[]) AS t)`,
      [keyless],
    )
    return keyless.filter((collection) => !full.some((row) => row.name === collection))
  }

  /**
   * A table without a key, read while a SHARE lock holds its writers back: every transaction
   * that wrote it committed before the read, at or before the WAL insert position read under
   * the lock (the cut), and every later one commits after it.
   */
  async readExact(_name: string, collection: string): Promise<{ rows: Row[]; cut: Position }> {
    return this.db.transaction(async (tx) => {
      await tx.query(`LOCK TABLE ${this.db.flavor.quoteIdentifier(collection)} IN SHARE MODE`)
      const [{ lsn }] = (await tx.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [
        { lsn: string },
      ]
      return { rows: await tx.find(collection), cut: { dialect: 'postgres', value: lsn } }
    })
  }

  covers(cut: Position, position: Position): boolean {
    return parseLsn(String(position.value)) <= parseLsn(String(cut.value))
  }

  /**
   * Tables whose REPLICA IDENTITY does not give the primary key of a deleted or re-keyed row:
   * NOTHING (PostgreSQL would also refuse the application its deletes once the table is
   * published), and USING INDEX on an index without every key column.
   */
  async uncapturable(collections: string[]): Promise<Array<{ collection: string; reason: string }>> {
    if (!collections.length) return []
    const rows = await this.db.query<{ name: string; identity: string; indexColumns: string[] | null }>(
      `SELECT c.relname AS name, c.relreplident AS identity,
         (SELECT array_agg(a.attname::text) FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
           WHERE i.indrelid = c.oid AND i.indisreplident) AS "indexColumns"
       FROM pg_class c WHERE c.oid IN (SELECT to_regclass(quote_ident(t)) FROM unnest($1::text[]) AS t)`,
      [collections],
    )
    const found: Array<{ collection: string; reason: string }> = []
    for (const collection of await this.keylessWithoutFullIdentity(collections))
      found.push({
        collection,
        reason: `${collection} has no primary key, and without REPLICA IDENTITY FULL its updates and deletes do not say which row they change; ALTER TABLE ${collection} REPLICA IDENTITY FULL (or add a primary key)`,
      })
    for (const row of rows) {
      if (row.identity === 'n')
        found.push({
          collection: row.name,
          reason: `${row.name} has REPLICA IDENTITY NOTHING: its deletes could not be captured (and PostgreSQL would refuse them once published); set REPLICA IDENTITY DEFAULT or FULL`,
        })
      if (row.identity !== 'i') continue
      const { primaryKey } = await this.db.describeCollection(row.name)
      const missing = primaryKey.filter((column) => !(row.indexColumns ?? []).includes(column))
      if (missing.length)
        found.push({
          collection: row.name,
          reason: `${row.name} has REPLICA IDENTITY USING INDEX on (${(row.indexColumns ?? []).join(', ')}), without its key column(s) ${missing.join(', ')}: deletes and key changes could not be carried; set REPLICA IDENTITY DEFAULT or FULL, or use an index that holds the key`,
        })
    }
    return found
  }

  async read(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    try {
      return await this.readSlot(name, options)
    } catch (error) {
      throw (await this.lostSlot(name)) ?? error
    }
  }

  /** CAPTURE_LOST when the capture's slot was invalidated (the WAL it needed is gone); null otherwise. */
  private async lostSlot(name: string): Promise<ReplicatorError | null> {
    const backlog = await this.backlog(name).catch(() => null)
    if (backlog?.walStatus !== 'lost') return null
    return new ReplicatorError(
      'CAPTURE_LOST',
      `[replicator:postgres] The replication slot of capture "${name}" on ${this.db.maskedUri} was invalidated (it held more WAL than max_slot_wal_keep_size): the changes it held are gone.`,
      { details: { capture: name, slot: this.captureObjects(name).slot } },
    )
  }

  private async readSlot(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    if (!this.sqlCaptureOnly.has(name)) {
      try {
        return await this.readFromStream(name, options)
      } catch (error) {
        // No replication connection allowed (pg_hba, REPLICATION privilege): the SQL functions
        // read the same slot, only slower.
        const code = (error as { code?: string }).code
        if (code !== '28000' && code !== '42501' && code !== '28P01') throw this.db.toReplicatorError(error)
        this.sqlCaptureOnly.add(name)
      }
    }
    return this.readWithSqlFunctions(name, options)
  }

  /** Closes a capture's replication stream and removes the spill files it left. */
  private async closeStream(name: string): Promise<void> {
    const state = this.streams.get(name)
    if (!state) return
    this.streams.delete(name)
    for (const spill of state.spills) spill.remove()
    await state.stream.close()
  }

  /**
   * Reads from the capture's replication stream (opened on first use). The stream keeps
   * receiving while the caller applies; when the caller asks again without having confirmed
   * what it was handed (its apply failed), the stream is reopened from the slot's confirmed
   * position so nothing is skipped.
   */
  private async readFromStream(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    const { slot, publication } = this.captureObjects(name)
    const after = options.after ? parseLsn(String(options.after.value)) : 0n
    let state = this.streams.get(name)
    // The caller asks for changes it was handed already and never confirmed (its apply failed,
    // or a new consumer starts over): read again from the slot's confirmed position. A caller
    // reading ahead (`after` = the end of what it was handed) just goes on.
    if (state && (state.stream.error || (after < state.handedOut && state.handedOut > state.confirmed))) {
      await this.closeStream(name)
      state = undefined
    }
    if (!state) {
      const [row] = await this.db.query<{ confirmed: string | null }>(
        'SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      )
      if (!row)
        throw new ReplicatorError(
          'QUERY_FAILED',
          `[replicator:postgres] Capture "${name}" has no replication slot on ${this.db.maskedUri}; add the rule again (capture.setup).`,
          { details: { capture: name } },
        )
      const slotConfirmed = row.confirmed ? parseLsn(row.confirmed) : 0n
      const from = after > slotConfirmed ? after : slotConfirmed
      // waits while a dying session of an earlier run still holds the slot
      const stream = await this.onSlot(slot, () =>
        ReplicationStream.open(
          this.db.config.uri,
          slot,
          publication,
          from,
          this.db.config.connectTimeoutMs ?? 5000,
          this.db.config.capture,
        ),
      )
      state = {
        stream,
        handedOut: from,
        confirmed: from,
        relations: new Map(),
        converters: new Map(),
        spills: new Set(),
      }
      this.streams.set(name, state)
    }
    const [{ lsn }] = (await this.db.query<{ lsn: string }>('SELECT pg_current_wal_flush_lsn()::text AS lsn')) as [
      { lsn: string },
    ]
    const transactions = await state.stream.take(Math.max(1, options.maxEvents), parseLsn(lsn), 10_000)
    if (!transactions.length) {
      // Nothing of this capture up to the server's flush position, and nothing handed out is
      // waiting for confirmation: that position may be confirmed (a keepalive, as Debezium's
      // heartbeat), so a quiet capture does not hold back the WAL other tables write.
      const idle = state.stream.idleThrough(parseLsn(lsn))
      if (idle === null || idle <= after || state.handedOut > state.confirmed) return { events: [], position: null }
      state.handedOut = idle
      return { events: [], position: { dialect: 'postgres', value: formatLsn(idle) }, caughtUp: true }
    }
    state.handedOut = transactions[transactions.length - 1]!.commitEnd
    const decodeOptions = { nativeText: true, lazyAfter: options.lazyAfter === true }
    // parts no larger than what a transaction may hold in memory
    if (transactions[0]!.spill)
      return this.decoder.decodeSpilled(name, transactions[0]!, after, state, {
        ...decodeOptions,
        partSize: state.stream.spillAfter,
      })
    return this.decoder.decodeMessages(
      name,
      transactions.flatMap((transaction) => transaction.messages),
      after,
      state.relations,
      state.converters,
      decodeOptions,
    )
  }

  /** The same slot read with `pg_logical_slot_peek_binary_changes` (re-decoded from its restart point on each call). */
  private async readWithSqlFunctions(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    const { slot, publication } = this.captureObjects(name)
    const after = options.after ? parseLsn(String(options.after.value)) : 0n
    const rows = await this.onSlot(slot, () =>
      this.db.query<{ data: Buffer }>(
        `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, 'proto_version', '1', 'publication_names', $3)`,
        [slot, Math.max(1, options.maxEvents), publication],
      ),
    )
    return this.decoder.decodeMessages(
      name,
      rows.map((row) => row.data),
      after,
      new Map(),
      new Map(),
      { nativeText: false, lazyAfter: options.lazyAfter === true },
    )
  }

  async confirm(name: string, position: Position): Promise<void> {
    const state = this.streams.get(name)
    if (state && !state.stream.error) {
      // The stream holds the slot: the position goes back as its flush position.
      const lsn = parseLsn(String(position.value))
      if (lsn > state.confirmed) state.confirmed = lsn
      state.stream.confirm(state.confirmed)
      return
    }
    if (state) await this.closeStream(name)
    const { slot } = this.captureObjects(name)
    // A slot already past `position` (an idle position confirmed since the target's offset was
    // stored) stays where it is: the server refuses to move a slot back.
    await this.onSlot(slot, () =>
      this.db.query(
        'SELECT pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn < $2::pg_lsn',
        [slot, String(position.value)],
      ),
    )
    await this.logRunningTransactions()
  }

  /**
   * Asks the server to log its running transactions (PostgreSQL 16+, superuser). A slot's
   * restart point only moves past such a record, and every peek decodes from the restart
   * point: without it, a long backlog is decoded again and again (the server logs one by
   * itself only every 15 s).
   */
  private async logRunningTransactions(): Promise<void> {
    if (this.canLogSnapshot === false) return
    try {
      await this.db.query('SELECT pg_log_standby_snapshot()')
      this.canLogSnapshot = true
    } catch {
      this.canLogSnapshot = false // older server, or not allowed: the server's own 15 s cadence applies
    }
  }
}

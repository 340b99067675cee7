import { createHash } from 'node:crypto'
import {
  keyOfRow,
  type ChangeEvent,
  type CaptureBacklog,
  type CaptureOptions,
  type ChangeBatch,
  type ChangeCapture,
  type CollectionDescription,
  type Position,
  type ReadChangesOptions,
  type Row,
} from '@mostajs/replicator-core'
import { columnDecoder } from '@mostajs/replicator-core/sql'
import { sqlitePathOf, sqlString, type SqliteDialect } from './sqlite-dialect.js'

/** A changelog row as a trigger wrote it. */
interface ChangelogRow {
  id: bigint
  op: string
  collection: string
  key: string
  after: string | null
  at: string
}

/** Change capture by triggers that write each change to a changelog table in the same transaction. */
export class SqliteCapture implements ChangeCapture {
  /** What each capture was set up with in this process, and the schema version then. */
  private readonly setups = new Map<string, { collections: string[]; schemaVersion: number }>()

  constructor(private readonly db: SqliteDialect) {}

  private changelogOf(name: string): string {
    return `_replicator_changelog_${name}`
  }

  /**
   * Trigger names of one capture on one table. The hash keeps them apart where the readable
   * part would not: capture `orders` on `eu_items` and capture `orders_eu` on `items`.
   */
  private triggerNames(name: string, collection: string, columns: string[]): string[] {
    // the columns are in the hash too: a table that gained or lost a column gets new triggers
    const hash = createHash('sha1')
      .update(`${name}\u0000${collection}\u0000${columns.join('\u0000')}`)
      .digest('hex')
      .slice(0, 10)
    return ['c', 'u', 'd'].map((op) => `_replicator_${name}_${collection}_${hash}_${op}`)
  }

  /** JSON of a row's columns as written by a trigger (`NEW`/`OLD`): exact for 64-bit integers and blobs. */
  private rowJson(description: CollectionDescription, alias: 'NEW' | 'OLD', columns: string[]): string {
    const q = (identifier: string) => this.db.flavor.quoteIdentifier(identifier)
    const parts = columns.map((name) => {
      const column = description.columns.find((candidate) => candidate.name === name)!
      const reference = `${alias}.${q(name)}`
      // hex(NULL) is '' in SQLite: keep NULL a NULL
      const value =
        column.type === 'binary'
          ? `CASE WHEN ${reference} IS NULL THEN NULL ELSE hex(${reference}) END`
          : column.type === 'bigint' || column.type === 'unknown'
            ? `CASE WHEN typeof(${reference}) = 'blob' THEN hex(${reference}) ELSE CAST(${reference} AS TEXT) END`
            : reference
      return `${sqlString(name)}, ${value}`
    })
    return `json_object(${parts.join(', ')})`
  }

  async setup(options: CaptureOptions): Promise<void> {
    const q = (identifier: string) => this.db.flavor.quoteIdentifier(identifier)
    const log = q(this.changelogOf(options.name))
    const statements = [
      `CREATE TABLE IF NOT EXISTS ${log} (id INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, collection TEXT NOT NULL, key TEXT NOT NULL, after TEXT, at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))`,
    ]
    const wanted = new Set<string>()
    for (const collection of options.collections) {
      const description = await this.db.describeCollection(collection)
      const all = description.columns.map((column) => column.name)
      // a table without a key logs whole old rows in `key`: they say which copy a change meant
      const identity = description.primaryKey.length ? description.primaryKey : all
      const names = this.triggerNames(options.name, collection, all)
      for (const trigger of names) wanted.add(trigger)
      const [insert, update, remove] = names.map(q)
      const table = q(collection)
      const name = sqlString(collection)
      const keyChanged = description.primaryKey.length
        ? description.primaryKey.map((key) => `OLD.${q(key)} IS NOT NEW.${q(key)}`).join(' OR ')
        : '0'
      const oldIdentity = this.rowJson(description, 'OLD', identity)
      // Each trigger writes in the same transaction as the change: nothing committed is missed.
      statements.push(
        `CREATE TRIGGER IF NOT EXISTS ${insert} AFTER INSERT ON ${table} BEGIN INSERT INTO ${log} (op, collection, key, after) VALUES ('c', ${name}, ${this.rowJson(description, 'NEW', identity)}, ${this.rowJson(description, 'NEW', all)}); END`,
        `CREATE TRIGGER IF NOT EXISTS ${update} AFTER UPDATE ON ${table} BEGIN
           INSERT INTO ${log} (op, collection, key, after) SELECT 'd', ${name}, ${oldIdentity}, NULL WHERE ${keyChanged};
           INSERT INTO ${log} (op, collection, key, after) VALUES ('u', ${name}, ${description.primaryKey.length ? this.rowJson(description, 'NEW', identity) : oldIdentity}, ${this.rowJson(description, 'NEW', all)});
         END`,
        `CREATE TRIGGER IF NOT EXISTS ${remove} AFTER DELETE ON ${table} BEGIN INSERT INTO ${log} (op, collection, key, after) VALUES ('d', ${name}, ${oldIdentity}, NULL); END`,
      )
    }
    // Triggers of this capture that are not wanted any more (a collection left the capture, or
    // names of an earlier version) go in the same transaction: no change is logged twice.
    const stale = (await this.triggersOf(options.name)).filter((trigger) => !wanted.has(trigger))
    await this.db.transaction(async (tx) => {
      for (const trigger of stale) await tx.query(`DROP TRIGGER IF EXISTS ${q(trigger)}`)
      for (const statement of statements) await tx.query(statement)
    })
    this.setups.set(options.name, { collections: [...options.collections], schemaVersion: await this.schemaVersion() })
  }

  /** SQLite's schema version: it changes with every CREATE, ALTER or DROP. */
  private async schemaVersion(): Promise<number> {
    const [row] = await this.db.query<{ schema_version: number }>('PRAGMA schema_version')
    return Number(row?.schema_version ?? 0)
  }

  /**
   * Rebuilds a capture's triggers when a table changed since they were made (a column added
   * or dropped), so its new columns are captured. Changes written between the ALTER and this
   * rebuild carry the old columns only.
   */
  private async followSchema(name: string): Promise<void> {
    const setup = this.setups.get(name)
    if (!setup || setup.schemaVersion === (await this.schemaVersion())) return
    this.db.invalidateCatalog()
    await this.setup({ name, collections: setup.collections })
  }

  /**
   * The triggers that write into a capture's changelog, whatever their names (no prefix match:
   * the triggers of capture `orders_eu` must survive dropping capture `orders`).
   */
  private async triggersOf(name: string): Promise<string[]> {
    const log = this.db.flavor.quoteIdentifier(this.changelogOf(name))
    const triggers = await this.db.query<{ name: string; sql: string }>(
      `SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'`,
    )
    return triggers.filter((trigger) => trigger.sql.includes(`INSERT INTO ${log} `)).map((trigger) => trigger.name)
  }

  async drop(name: string): Promise<void> {
    this.setups.delete(name)
    const q = (identifier: string) => this.db.flavor.quoteIdentifier(identifier)
    const triggers = (await this.triggersOf(name)).map((trigger) => ({ name: trigger }))
    await this.db.transaction(async (tx) => {
      for (const trigger of triggers) await tx.query(`DROP TRIGGER IF EXISTS ${q(trigger.name)}`)
      await tx.query(`DROP TABLE IF EXISTS ${q(this.changelogOf(name))}`)
    })
    this.db.invalidateCatalog()
  }

  /**
   * Changes up to the changelog's last row when the read began. SQLite has one writer and a
   * reader sees whole commits, so that row ends a transaction; the rows before it are read in
   * parts (`nextPart`) into one target transaction, never cut inside a source transaction.
   * They share the position of that last row: a source transaction has no id of its own here.
   */
  async read(name: string, options: ReadChangesOptions): Promise<ChangeBatch> {
    await this.followSchema(name)
    const changelog = this.db.flavor.quoteIdentifier(this.changelogOf(name))
    const after = options.after ? Number(options.after.value) : 0
    const [end] = await this.db.query<{ last: bigint | number | null }>(`SELECT max(id) AS last FROM ${changelog}`)
    const last = end?.last === null || end?.last === undefined ? after : Number(end.last)
    if (last <= after) return { events: [], position: null }
    const position: Position = { dialect: 'sqlite', value: last }
    const limit = Math.max(1, options.maxEvents)
    let readUpTo = after
    const page = async (): Promise<ChangeEvent[] | null> => {
      if (readUpTo >= last) return null
      const rows = await this.db.query<ChangelogRow>(
        `SELECT id, op, collection, key, after, at FROM ${changelog} WHERE id > ? AND id <= ? ORDER BY id LIMIT ?`,
        [readUpTo, last, limit],
      )
      readUpTo = rows.length ? Number(rows[rows.length - 1]!.id) : last
      if (rows.length < limit) readUpTo = last
      const events: ChangeEvent[] = []
      for (const row of rows) events.push(await this.changeEvent(row, position))
      return events
    }
    const events = (await page())!
    return readUpTo < last ? { events, position, nextPart: page } : { events, position }
  }

  private async changeEvent(row: ChangelogRow, position: Position): Promise<ChangeEvent> {
    const description = await this.db.describeCollection(row.collection)
    const keyRow = this.changelogRow(description, row.key)
    const keyless = !description.primaryKey.length
    return {
      op: row.op as ChangeEvent['op'],
      collection: row.collection,
      key: keyOfRow(keyRow, description.primaryKey),
      // a table without a key logs the whole old row of an update or delete
      before: keyless && row.op !== 'c' ? keyRow : null,
      after: row.after === null ? null : this.changelogRow(description, row.after),
      source: { dialect: 'sqlite', database: sqlitePathOf(this.db.config.uri), position, ts: Date.parse(row.at) },
    }
  }

  /** A row from the changelog JSON, turned into portable values like a read of the table. */
  private changelogRow(description: CollectionDescription, json: string): Row {
    const row = JSON.parse(json) as Row
    for (const column of description.columns) {
      const value = row[column.name]
      if (value === null || value === undefined) continue
      if (column.type === 'binary') row[column.name] = Buffer.from(String(value), 'hex')
      else {
        const decode = columnDecoder(this.db.flavor, column)
        if (decode) row[column.name] = decode(value)
      }
    }
    return row
  }

  /**
   * A table without a key, read in one transaction that also removes its changes from the
   * changelog: SQLite has one writer, so they are exactly the changes the read holds (no cut).
   */
  async readExact(name: string, collection: string): Promise<{ rows: Row[]; cut: null }> {
    const changelog = this.db.flavor.quoteIdentifier(this.changelogOf(name))
    return this.db.transaction(async (tx) => {
      const rows = await tx.find(collection)
      await tx.query(`DELETE FROM ${changelog} WHERE collection = ?`, [collection])
      return { rows, cut: null }
    })
  }

  async backlog(name: string): Promise<CaptureBacklog | null> {
    const exists = await this.db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [
      this.changelogOf(name),
    ])
    if (!exists.length) return null
    const [row] = await this.db.query<{ pending: number }>(
      `SELECT count(*) AS pending FROM ${this.db.flavor.quoteIdentifier(this.changelogOf(name))}`,
    )
    return { pendingEvents: Number(row?.pending ?? 0) }
  }

  async confirm(name: string, position: Position): Promise<void> {
    await this.db.query(`DELETE FROM ${this.db.flavor.quoteIdentifier(this.changelogOf(name))} WHERE id <= ?`, [
      Number(position.value),
    ])
  }
}

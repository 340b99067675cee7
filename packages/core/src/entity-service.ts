import { EventEmitter } from 'node:events'
import { randomUUID } from 'node:crypto'
import type { Dialect } from './dialect.js'
import { ReplicatorError } from './errors.js'
import type { Filter, FindOptions } from './filter.js'
import { isEntitySchema, type EntitySchema, type Row, type RowKey } from './schema.js'

/** Payload of `entity.created`. */
export interface EntityCreatedEvent {
  entity: string
  data: Row
}
/** Payload of `entity.updated`. */
export interface EntityUpdatedEvent {
  entity: string
  id: RowKey
  data: Row
}
/** Payload of `entity.deleted`. */
export interface EntityDeletedEvent {
  entity: string
  id: RowKey
}

/** An entity reference: its schema, its schema name, or a bare collection name. */
export type EntityRef = EntitySchema | string

/**
 * The @mostajs/orm `EntityService` surface over any {@link Dialect}: entity-level CRUD with
 * events. Entities are named by schema (`name` → `collection`), or by collection name when
 * no schema is registered. Keys are `id` for schemas; for bare collections, the table's
 * primary key.
 *
 * @example
 * const users = new EntityService(dialect, [UserSchema])
 * users.on('entity.created', ({ entity, data }) => console.log(entity, data.id))
 * const alice = await users.create('User', { email: 'alice@example.com' })
 * await users.update('User', alice.id, { name: 'Alice' })
 * await users.dialect.$transaction(async (tx) => {
 *   await tx.update('accounts', { id: 'a' }, { $inc: { balance: -50 } })
 * })
 */
export class EntityService extends EventEmitter {
  private readonly schemas = new Map<string, EntitySchema>()
  /** Primary key column of bare collections, read once. */
  private readonly keyColumns = new Map<string, string>()

  constructor(
    readonly dialect: Dialect,
    schemas: EntitySchema[] = [],
  ) {
    super()
    for (const schema of schemas) this.registerSchema(schema)
  }

  /** Registers an entity schema so it can be named by `name`. */
  registerSchema(schema: EntitySchema): void {
    if (!isEntitySchema(schema))
      throw new ReplicatorError('CONFIG_INVALID', 'registerSchema takes an EntitySchema { name, collection, fields }.')
    this.schemas.set(schema.name, schema)
  }

  /** Entity schemas known to this service. */
  getSchemas(): EntitySchema[] {
    return [...this.schemas.values()]
  }

  private resolve(entity: EntityRef): { name: string; collection: string; schema?: EntitySchema } {
    if (isEntitySchema(entity)) return { name: entity.name, collection: entity.collection, schema: entity }
    if (typeof entity !== 'string' || entity === '')
      throw new ReplicatorError(
        'CONFIG_INVALID',
        'An entity is named by its schema, its schema name or its collection name.',
      )
    const schema = this.schemas.get(entity)
    return schema ? { name: schema.name, collection: schema.collection, schema } : { name: entity, collection: entity }
  }

  private async keyColumn(target: { collection: string; schema?: EntitySchema }): Promise<string> {
    if (target.schema) return 'id'
    const known = this.keyColumns.get(target.collection)
    if (known) return known
    const { primaryKey } = await this.dialect.describeCollection(target.collection)
    if (primaryKey.length !== 1) {
      throw new ReplicatorError(
        'NOT_SUPPORTED',
        `Collection "${target.collection}" has ${primaryKey.length ? 'a composite' : 'no'} primary key; use the dialect's filter-based methods.`,
      )
    }
    this.keyColumns.set(target.collection, primaryKey[0]!)
    return primaryKey[0]!
  }

  private liveFilter(target: { schema?: EntitySchema }, filter: Filter = {}): Filter {
    return target.schema?.softDelete ? { $and: [filter, { deletedAt: null }] } : filter
  }

  /** Rows matching `filter`, with sort/skip/limit. */
  findAll(entity: EntityRef, filter: Filter = {}, options: FindOptions = {}): Promise<Row[]> {
    const target = this.resolve(entity)
    return this.dialect.find(target.collection, this.liveFilter(target, filter), options)
  }

  /** The first row matching `filter`, or null. */
  findOne(entity: EntityRef, filter: Filter = {}, options: Omit<FindOptions, 'limit'> = {}): Promise<Row | null> {
    const target = this.resolve(entity)
    return this.dialect.findOne(target.collection, this.liveFilter(target, filter), options)
  }

  /** The row with this id, or null. */
  async findById(entity: EntityRef, id: RowKey): Promise<Row | null> {
    const target = this.resolve(entity)
    return this.dialect.findOne(target.collection, this.liveFilter(target, { [await this.keyColumn(target)]: id }))
  }

  /** Number of rows matching `filter`. */
  count(entity: EntityRef, filter: Filter = {}): Promise<number> {
    const target = this.resolve(entity)
    return this.dialect.count(target.collection, this.liveFilter(target, filter))
  }

  /** Inserts a row (a uuid `id` is generated for schema entities) and emits `entity.created`. */
  async create(entity: EntityRef, data: Row): Promise<Row> {
    const target = this.resolve(entity)
    const row: Row = { ...data }
    if (target.schema) {
      if (row.id === undefined && !target.schema.fields.id) row.id = randomUUID()
      if (target.schema.timestamps) {
        const now = new Date()
        row.createdAt ??= now
        row.updatedAt ??= now
      }
    }
    const created = await this.dialect.insert(target.collection, row)
    this.emit('entity.created', { entity: target.name, data: created } satisfies EntityCreatedEvent)
    return created
  }

  /** Updates the row with this id and returns it (null when absent); emits `entity.updated`. */
  async update(entity: EntityRef, id: RowKey, data: Row): Promise<Row | null> {
    const target = this.resolve(entity)
    const keyColumn = await this.keyColumn(target)
    const changes: Row = { ...data }
    delete changes[keyColumn]
    if (target.schema?.timestamps) changes.updatedAt ??= new Date()
    const changed = await this.dialect.update(target.collection, { [keyColumn]: id }, changes)
    if (changed === 0) return null
    const updated = await this.dialect.findOne(target.collection, { [keyColumn]: id })
    this.emit('entity.updated', { entity: target.name, id, data: updated ?? changes } satisfies EntityUpdatedEvent)
    return updated
  }

  /** Deletes the row with this id (soft delete when the schema says so); emits `entity.deleted`. */
  async delete(entity: EntityRef, id: RowKey): Promise<boolean> {
    const target = this.resolve(entity)
    const keyColumn = await this.keyColumn(target)
    const removed = target.schema?.softDelete
      ? await this.dialect.update(target.collection, { [keyColumn]: id, deletedAt: null }, { deletedAt: new Date() })
      : await this.dialect.delete(target.collection, { [keyColumn]: id })
    if (removed === 0) return false
    this.emit('entity.deleted', { entity: target.name, id } satisfies EntityDeletedEvent)
    return true
  }
}

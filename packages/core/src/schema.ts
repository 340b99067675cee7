import { ReplicatorError } from './errors.js'
import { PORTABLE_TYPES, type ColumnType, type PortableType } from './portable-types.js'

/** Field types of an @mostajs/orm entity schema. */
export type EntityFieldType = 'string' | 'text' | 'number' | 'boolean' | 'date' | 'json' | 'array'

/** One field of an @mostajs/orm entity schema. */
export interface EntityField {
  type: EntityFieldType
  required?: boolean
  unique?: boolean
  default?: unknown
  /** Extra portable precision where the ORM type is too coarse (e.g. `number` → `bigint`). */
  portableType?: PortableType
  [option: string]: unknown
}

/** A relation of an @mostajs/orm entity schema (kept for compatibility; not used for DDL). */
export interface EntityRelation {
  target: string
  type: 'one-to-one' | 'many-to-one' | 'one-to-many' | 'many-to-many'
  [option: string]: unknown
}

/** An index of an @mostajs/orm entity schema. */
export interface EntityIndex {
  fields: Record<string, 'asc' | 'desc' | 1 | -1> | string[]
  unique?: boolean
}

/**
 * An @mostajs/orm entity schema. `collection` is the table name. The primary key is `id`
 * (a uuid string generated on create) unless the entity has no `id` field.
 */
export interface EntitySchema {
  name: string
  collection: string
  fields: Record<string, EntityField>
  relations?: Record<string, EntityRelation>
  indexes?: EntityIndex[]
  timestamps?: boolean
  softDelete?: boolean
}

/** A column of a portable collection schema, as given to `ensureCollection`. */
export interface ColumnSchema {
  name: string
  type: PortableType
  /** Defaults to true for non-key columns. */
  nullable?: boolean
  /** `string` length (default 255). */
  length?: number
  /** `decimal` precision and scale (default 38, 10). */
  precision?: number
  scale?: number
}

/** A portable table definition: what `ensureCollection` creates in any dialect. */
export interface CollectionSchema {
  name: string
  columns: ColumnSchema[]
  primaryKey: string[]
}

/** A column as found in the database by introspection. */
export interface ColumnDescription {
  name: string
  /** Portable type, or `unknown` when the native type has no portable equivalent. */
  type: ColumnType
  /** The type as the database spells it (e.g. `timestamp with time zone`, `tinyint(1)`). */
  nativeType: string
  nullable: boolean
  /** True when the database fills it (serial, auto_increment, rowid alias). */
  autoIncrement?: boolean
  length?: number
  precision?: number
  scale?: number
}

/** A table as found in the database by introspection. */
export interface CollectionDescription {
  name: string
  columns: ColumnDescription[]
  /** Primary key columns in key order; empty when the table has none. */
  primaryKey: string[]
}

/** Primary key value of a row: the single key value, or an object of the key columns. */
export type RowKey = unknown

/** A row: column name → portable JS value. */
export type Row = Record<string, unknown>

const ENTITY_TO_PORTABLE: Record<EntityFieldType, PortableType> = {
  string: 'string',
  text: 'text',
  number: 'double',
  boolean: 'boolean',
  date: 'timestamp',
  json: 'json',
  array: 'json',
}

/** True when `schema` looks like an @mostajs/orm EntitySchema rather than a CollectionSchema. */
export function isEntitySchema(schema: unknown): schema is EntitySchema {
  return typeof schema === 'object' && schema !== null && 'fields' in schema && 'collection' in schema
}

/**
 * Converts an @mostajs/orm entity schema to the portable table it is stored in.
 * `id` becomes a uuid primary key unless declared otherwise; `timestamps` adds
 * `createdAt`/`updatedAt`; `softDelete` adds `deletedAt`.
 */
export function toCollectionSchema(schema: EntitySchema | CollectionSchema): CollectionSchema {
  if (!isEntitySchema(schema)) {
    validateCollectionSchema(schema)
    return schema
  }
  const columns: ColumnSchema[] = []
  const idField = schema.fields.id
  columns.push({
    name: 'id',
    type: idField?.portableType ?? (idField ? ENTITY_TO_PORTABLE[idField.type] : 'uuid'),
    nullable: false,
  })
  for (const [name, field] of Object.entries(schema.fields)) {
    if (name === 'id') continue
    const type = field.portableType ?? ENTITY_TO_PORTABLE[field.type]
    if (!type) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `Entity "${schema.name}": field "${name}" has unknown type "${String(field.type)}". Use one of ${Object.keys(ENTITY_TO_PORTABLE).join(', ')}.`,
      )
    }
    columns.push({ name, type, nullable: !field.required })
  }
  if (schema.timestamps) {
    for (const name of ['createdAt', 'updatedAt'])
      if (!columns.some((c) => c.name === name)) columns.push({ name, type: 'timestamp', nullable: true })
  }
  if (schema.softDelete && !columns.some((c) => c.name === 'deletedAt'))
    columns.push({ name: 'deletedAt', type: 'timestamp', nullable: true })
  return { name: schema.collection, columns, primaryKey: ['id'] }
}

function validateCollectionSchema(schema: CollectionSchema): void {
  const where = `Collection schema "${String(schema?.name)}"`
  if (!schema || typeof schema.name !== 'string' || schema.name === '')
    throw new ReplicatorError('CONFIG_INVALID', 'A collection schema needs a non-empty "name".')
  if (!Array.isArray(schema.columns) || schema.columns.length === 0)
    throw new ReplicatorError('CONFIG_INVALID', `${where} needs at least one column.`)
  // an empty primaryKey is a table without one (carried from a source that has such tables)
  if (!Array.isArray(schema.primaryKey))
    throw new ReplicatorError('CONFIG_INVALID', `${where} needs a primaryKey (its key columns; [] for none).`)
  const names = new Set<string>()
  for (const column of schema.columns) {
    if (names.has(column.name))
      throw new ReplicatorError('CONFIG_INVALID', `${where}: column "${column.name}" is declared twice.`)
    names.add(column.name)
    if (!PORTABLE_TYPES.includes(column.type)) {
      throw new ReplicatorError(
        'TYPE_UNSUPPORTED',
        `${where}: column "${column.name}" has type "${String(column.type)}", which is not a portable type (${PORTABLE_TYPES.join(', ')}).`,
      )
    }
  }
  for (const key of schema.primaryKey) {
    if (!names.has(key))
      throw new ReplicatorError('CONFIG_INVALID', `${where}: primary key column "${key}" is not among its columns.`)
  }
}

/**
 * The portable table that reproduces an introspected one in another database (what a copy or
 * a replication rule creates on its target). TYPE_UNSUPPORTED names every column that has no
 * portable type.
 */
export function collectionSchemaOf(description: CollectionDescription): CollectionSchema {
  const unknown = description.columns.filter((column) => column.type === 'unknown')
  if (unknown.length) {
    throw new ReplicatorError(
      'TYPE_UNSUPPORTED',
      `Collection "${description.name}" cannot be carried: ${unknown.map((column) => `${description.name}.${column.name} (${column.nativeType})`).join('; ')} ${unknown.length > 1 ? 'have' : 'has'} no portable type.`,
      {
        details: { collection: description.name, columns: unknown.map((column) => column.name) },
      },
    )
  }
  return {
    name: description.name,
    primaryKey: description.primaryKey,
    columns: description.columns.map((column) => ({
      name: column.name,
      type: column.type as PortableType,
      nullable: column.nullable,
      length: column.length,
      precision: column.precision,
      scale: column.scale,
    })),
  }
}

import pg from 'pg'
import type { ColumnDescription, ColumnType } from '@mostajs/replicator-core'

/** Type OIDs whose default pg parsing would lose precision or shift time zones. */
const OID = { int8: 20, date: 1082, timestamp: 1114, numeric: 1700 } as const

/** Per-pool type parsers (never the process-wide pg.types, which other code may rely on). */
export const typeParsers = {
  getTypeParser(oid: number, format?: string) {
    if (format === 'binary') return pg.types.getTypeParser(oid, 'binary')
    switch (oid) {
      case OID.int8:
        return (text: string) => BigInt(text)
      case OID.date:
        return (text: string) => text
      case OID.numeric:
        return (text: string) => text
      case OID.timestamp:
        // timestamp without time zone: read as UTC, never as the Node process' local time
        return (text: string) => new Date(`${text.replace(' ', 'T')}Z`)
      default:
        return pg.types.getTypeParser(oid, 'text')
    }
  },
} as unknown as pg.CustomTypesConfig

/** Portable type of each PostgreSQL type name (anything else is `unknown`: not carried). */
export const PORTABLE_BY_PG_TYPE: Record<string, ColumnType> = {
  bool: 'boolean',
  int2: 'integer',
  int4: 'integer',
  int8: 'bigint',
  numeric: 'decimal',
  float4: 'double',
  float8: 'double',
  varchar: 'string',
  bpchar: 'string',
  text: 'text',
  json: 'json',
  jsonb: 'json',
  timestamptz: 'timestamp',
  timestamp: 'timestamp',
  date: 'date',
  bytea: 'binary',
  uuid: 'uuid',
}

/** Columns, types and primary key of a table of the current schema. */
export const DESCRIBE_COLUMNS = `
SELECT a.attname AS name, t.typname AS udt, format_type(a.atttypid, a.atttypmod) AS native, a.atttypmod AS typmod,
       NOT a.attnotnull AS nullable,
       (a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%') AS auto,
       coalesce((SELECT k.position FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
                 WHERE i.indrelid = c.oid AND i.indisprimary AND k.attnum = a.attnum), 0) AS key_position
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relname = $1 AND n.nspname = current_schema() AND c.relkind IN ('r', 'p')
ORDER BY a.attnum`

export interface DescribedRow {
  name: string
  udt: string
  native: string
  typmod: number
  nullable: boolean
  auto: boolean
  key_position: number
}

/** A described column as a portable column. */
export function toColumn(row: DescribedRow): ColumnDescription {
  const type = PORTABLE_BY_PG_TYPE[row.udt] ?? 'unknown'
  const column: ColumnDescription = { name: row.name, type, nativeType: row.native, nullable: row.nullable }
  if (row.auto) column.autoIncrement = true
  const typmod = Number(row.typmod)
  if (typmod > 0) {
    if (type === 'string') column.length = typmod - 4
    if (type === 'decimal') {
      column.precision = ((typmod - 4) >> 16) & 0xffff
      column.scale = (typmod - 4) & 0xffff
    }
  }
  return column
}

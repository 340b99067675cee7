import { describe, expect, it } from 'vitest'
import type { CollectionDescription } from '../src/index.js'
import { compileFilter, compileSort, SqlParams, type SqlFlavor } from '../src/sql/index.js'

// A minimal flavor: filter compilation is pure string building, no database involved.
const flavor = {
  family: 'postgres',
  quoteIdentifier: (name: string) => `"${name.replaceAll('"', '""')}"`,
  placeholder: (index: number) => `$${index}`,
  encoderFor: () => null,
  nullsOrdering: (descending: boolean) => (descending ? ' NULLS LAST' : ' NULLS FIRST'),
} as unknown as SqlFlavor

const table: CollectionDescription = {
  name: 't',
  primaryKey: ['id'],
  columns: ['id', 'a', 'b', 'weird"col'].map((name) => ({
    name,
    type: 'integer' as const,
    nativeType: 'integer',
    nullable: true,
  })),
}

function compile(filter: Record<string, unknown>) {
  const params = new SqlParams(flavor)
  return { sql: compileFilter(filter, table, flavor, params), values: params.values }
}

describe('compileFilter', () => {
  it('binds every value and never inlines it', () => {
    expect(compile({ a: "1'; drop table t; --" })).toEqual({ sql: '"a" = $1', values: ["1'; drop table t; --"] })
    expect(compile({ 'weird"col': 1 }).sql).toBe('"weird""col" = $1')
  })
  it('compiles operators, null, $in/$nin with null and empty lists', () => {
    expect(compile({ a: { $gt: 1, $lte: 5 }, b: null })).toEqual({
      sql: '"a" > $1 AND "a" <= $2 AND "b" IS NULL',
      values: [1, 5],
    })
    expect(compile({ a: { $ne: 3 } }).sql).toBe('("a" <> $1 OR "a" IS NULL)')
    expect(compile({ a: { $ne: null } }).sql).toBe('"a" IS NOT NULL')
    expect(compile({ a: { $in: [1, null] } }).sql).toBe('("a" IN ($1) OR "a" IS NULL)')
    expect(compile({ a: { $in: [] } }).sql).toBe('1=0')
    expect(compile({ a: { $nin: [1, 2] } }).sql).toBe('("a" NOT IN ($1, $2) OR "a" IS NULL)')
    expect(compile({ a: { $nin: [] } }).sql).toBe('1=1')
    expect(compile({ $or: [{ a: 1 }, { $and: [{ b: 2 }, { id: 3 }] }] })).toEqual({
      sql: '(("a" = $1) OR ((("b" = $2) AND ("id" = $3))))',
      values: [1, 2, 3],
    })
    expect(compile({}).sql).toBe('1=1')
  })
  it('rejects what it cannot express', () => {
    expect(() => compile({ a: { $regex: 'x' } })).toThrow(expect.objectContaining({ code: 'FILTER_INVALID' }))
    expect(() => compile({ a: { $gt: null } })).toThrow(expect.objectContaining({ code: 'FILTER_INVALID' }))
    expect(() => compile({ a: { $in: 3 } })).toThrow(expect.objectContaining({ code: 'FILTER_INVALID' }))
    expect(() => compile({ $or: {} })).toThrow(expect.objectContaining({ code: 'FILTER_INVALID' }))
    expect(() => compile({ missing: 1 })).toThrow(expect.objectContaining({ code: 'COLUMN_NOT_FOUND' }))
  })
  it('sorts with NULLs first on PostgreSQL, like the other databases', () => {
    expect(compileSort({ a: 1, b: 'desc' }, table, flavor)).toBe(' ORDER BY "a" ASC NULLS FIRST, "b" DESC NULLS LAST')
    expect(() => compileSort({ a: 2 as never }, table, flavor)).toThrow(/Sort direction/)
  })
})

import { describe, expect, it } from 'vitest'
import {
  nativeTypeFor,
  normalizeDecimal,
  PORTABLE_TYPES,
  NATIVE_TYPES,
  toCollectionSchema,
  type EntitySchema,
} from '../src/index.js'

describe('normalizeDecimal', () => {
  it.each([
    ['1.500000', '1.5'],
    ['2.000', '2'],
    ['-0.000', '0'],
    ['000123.4500', '123.45'],
    ['+7', '7'],
    ['-12345678901234567890.0000000001', '-12345678901234567890.0000000001'],
    ['0.10', '0.1'],
    ['.5', '0.5'],
    ['1e3', '1000'],
    ['1.25e-3', '0.00125'],
    ['-2.5E+2', '-250'],
  ])('%s → %s', (input, expected) => {
    expect(normalizeDecimal(input)).toBe(expected)
  })
  it('accepts numbers and bigints', () => {
    expect(normalizeDecimal(12.5)).toBe('12.5')
    expect(normalizeDecimal(10n ** 30n)).toBe('1' + '0'.repeat(30))
    expect(normalizeDecimal(1e-7)).toBe('0.0000001')
  })
})

describe('native type table', () => {
  it('maps every portable type for every family', () => {
    for (const type of PORTABLE_TYPES) {
      for (const family of ['postgres', 'mysql', 'mariadb', 'sqlite'] as const)
        expect(NATIVE_TYPES[type][family]).toBeTruthy()
    }
  })
  it('fills length, precision and scale', () => {
    expect(nativeTypeFor('postgres', 'string', { length: 40 })).toBe('varchar(40)')
    expect(nativeTypeFor('mariadb', 'decimal', { precision: 12, scale: 2 })).toBe('decimal(12,2)')
    expect(nativeTypeFor('sqlite', 'decimal')).toBe('DECIMAL_TEXT(38,10)')
  })
})

describe('toCollectionSchema', () => {
  const User: EntitySchema = {
    name: 'User',
    collection: 'users',
    fields: {
      email: { type: 'string', required: true },
      age: { type: 'number' },
      tags: { type: 'array' },
      born: { type: 'date' },
    },
    timestamps: true,
    softDelete: true,
  }
  it('turns an @mostajs/orm entity into a portable table', () => {
    expect(toCollectionSchema(User)).toEqual({
      name: 'users',
      primaryKey: ['id'],
      columns: [
        { name: 'id', type: 'uuid', nullable: false },
        { name: 'email', type: 'string', nullable: false },
        { name: 'age', type: 'double', nullable: true },
        { name: 'tags', type: 'json', nullable: true },
        { name: 'born', type: 'timestamp', nullable: true },
        { name: 'createdAt', type: 'timestamp', nullable: true },
        { name: 'updatedAt', type: 'timestamp', nullable: true },
        { name: 'deletedAt', type: 'timestamp', nullable: true },
      ],
    })
  })
  it('rejects malformed schemas with CONFIG_INVALID / TYPE_UNSUPPORTED', () => {
    expect(() => toCollectionSchema({ name: 't', columns: [], primaryKey: ['id'] })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    )
    expect(() =>
      toCollectionSchema({ name: 't', columns: [{ name: 'a', type: 'integer' }], primaryKey: ['id'] }),
    ).toThrow(/primary key column "id"/)
    expect(() =>
      toCollectionSchema({
        name: 't',
        columns: [
          { name: 'a', type: 'integer' },
          { name: 'a', type: 'text' },
        ],
        primaryKey: ['a'],
      }),
    ).toThrow(/declared twice/)
    expect(() =>
      toCollectionSchema({ name: 't', columns: [{ name: 'a', type: 'money' as never }], primaryKey: ['a'] }),
    ).toThrow(expect.objectContaining({ code: 'TYPE_UNSUPPORTED' }))
    expect(() => toCollectionSchema({ ...User, fields: { x: { type: 'blob' as never } } })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    )
  })
})

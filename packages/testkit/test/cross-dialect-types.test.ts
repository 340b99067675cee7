import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  collectionSchemaOf,
  createDialect,
  PORTABLE_TYPES,
  scanAll,
  type CollectionSchema,
  type Dialect,
  type Row,
} from '@mostajs/replicator-core'
import { testBackends } from '@mostajs/replicator-testkit/vitest'

// one column per portable type, c_<type>
const schema: CollectionSchema = {
  name: 'all_types',
  columns: [{ name: 'id', type: 'integer' }, ...PORTABLE_TYPES.map((type) => ({ name: `c_${type}`, type }))],
  primaryKey: ['id'],
}

const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
const unicode = 'héllo wörld — ✓ 𝄞 日本語 🎉 ‮RTL‬ "quotes" \'apostrophe\' back\\slash'

/** Every portable type at null, empty, unicode and extreme values. */
const ROWS: Row[] = [
  {
    id: 1,
    c_boolean: null,
    c_integer: null,
    c_bigint: null,
    c_decimal: null,
    c_double: null,
    c_string: null,
    c_text: null,
    c_json: null,
    c_timestamp: null,
    c_date: null,
    c_binary: null,
    c_uuid: null,
  },
  {
    id: 2,
    c_boolean: true,
    c_integer: 0,
    c_bigint: 0n,
    c_decimal: '0',
    c_double: 0,
    c_string: '',
    c_text: '',
    c_json: {},
    c_timestamp: new Date(0),
    c_date: '1970-01-01',
    c_binary: Buffer.alloc(0),
    c_uuid: '00000000-0000-0000-0000-000000000000',
  },
  {
    id: 3,
    c_boolean: false,
    c_integer: 2147483647,
    c_bigint: 9223372036854775807n,
    c_decimal: '1234567890123456789012345678.1234567891',
    c_double: 1.7976931348623157e308,
    c_string: unicode,
    c_text: unicode.repeat(2000),
    c_json: { nested: { list: [1, 'two', null, true, { deep: unicode }] }, n: 1.5 },
    c_timestamp: new Date('2024-02-29T23:59:59.999Z'),
    c_date: '2024-02-29',
    c_binary: allBytes,
    c_uuid: 'f47ac10b-58cc-4372-a567-0e02b2c3d479',
  },
  {
    id: 4,
    c_boolean: true,
    c_integer: -2147483648,
    c_bigint: -9223372036854775808n,
    c_decimal: '-0.0000000001',
    c_double: -2.2250738585072014e-308,
    c_string: 'x'.repeat(255),
    c_text: 'line1\nline2\r\n\ttab\u0001',
    c_json: ['array', 1, 2.5, false],
    c_timestamp: new Date('9999-12-31T23:59:59.999Z'),
    c_date: '9999-12-31',
    c_binary: Buffer.from('00ff00ff', 'hex'),
    c_uuid: 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  },
  {
    id: 5,
    c_boolean: false,
    c_integer: 42,
    c_bigint: 9007199254740993n,
    c_decimal: '99999999999999999999999999.5',
    c_double: 0.1 + 0.2,
    c_string: '0',
    c_text: 'null',
    c_json: 'just a string',
    c_timestamp: new Date('1000-01-01T00:00:00.001Z'),
    c_date: '1000-01-01',
    c_binary: Buffer.from(unicode),
    c_uuid: '123e4567-e89b-12d3-a456-426614174000',
  },
  {
    id: 6,
    c_boolean: true,
    c_integer: 7,
    c_bigint: -1n,
    c_decimal: '12.5',
    c_double: 3.141592653589793,
    c_string: '   spaces   ',
    c_text: '🎉'.repeat(1000),
    c_json: 42,
    c_timestamp: new Date('2001-09-09T01:46:40.123Z'),
    c_date: '2001-09-09',
    c_binary: Buffer.from([0]),
    c_uuid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  },
  {
    id: 7,
    c_boolean: false,
    c_integer: 1,
    c_bigint: 1n,
    c_decimal: '-12345678901234567890.0000000001',
    c_double: -0.5,
    c_string: 'a\u00a0b',
    c_text: 'x'.repeat(1_000_000),
    c_json: true,
    c_timestamp: new Date('1970-01-01T00:00:00.999Z'),
    c_date: '1999-12-31',
    c_binary: Buffer.alloc(100_000, 7),
    c_uuid: '6ba7b810-9dad-11d1-80b4-00c04fd430c8',
  },
]

const backends = testBackends()
const subjects = [
  { name: 'postgres', dialect: 'postgres', backend: backends.postgres },
  { name: 'mariadb', dialect: 'mariadb', backend: backends.mariadb },
  { name: 'sqlite', dialect: 'sqlite', backend: backends.sqlite },
]

describe('portable types round-trip between every pair of dialects', () => {
  const connected = new Map<string, { source: Dialect; target: Dialect; cleanups: Array<() => Promise<void>> }>()

  beforeAll(async () => {
    for (const subject of subjects) {
      if (!subject.backend.serverUrl) continue
      const cleanups: Array<() => Promise<void>> = []
      const open = async () => {
        const database = await subject.backend.freshDatabase()
        const dialect = createDialect({ dialect: subject.dialect, uri: database.uri })
        await dialect.connect()
        cleanups.push(async () => {
          await dialect.close()
          await database.cleanup()
        })
        return dialect
      }
      const source = await open()
      await source.ensureCollection(schema)
      await source.upsertMany(schema.name, ROWS)
      connected.set(subject.name, { source, target: await open(), cleanups })
    }
  })

  afterAll(async () => {
    for (const { cleanups } of connected.values()) for (const cleanup of cleanups) await cleanup()
  })

  it('covers every portable type', () => {
    expect(
      schema.columns
        .map((column) => column.type)
        .slice(1)
        .sort(),
    ).toEqual([...PORTABLE_TYPES].sort())
  })

  for (const from of subjects) {
    const skip = from.backend.serverUrl ? '' : ` (skipped: ${from.backend.skipReason})`
    it.skipIf(!from.backend.serverUrl)(`${from.name} stores and returns every value unchanged${skip}`, async () => {
      const { source } = connected.get(from.name)!
      expect(await source.find(schema.name, {}, { sort: { id: 1 } })).toEqual(ROWS)
      const description = await source.describeCollection(schema.name)
      expect(description.columns.map((column) => column.type)).toEqual(schema.columns.map((column) => column.type))
    })

    for (const to of subjects) {
      if (to === from) continue
      const reason = !from.backend.serverUrl
        ? from.backend.skipReason
        : !to.backend.serverUrl
          ? to.backend.skipReason
          : ''
      it.skipIf(Boolean(reason))(
        `${from.name} → ${to.name}: rows come back equal${reason ? ` (skipped: ${reason})` : ''}`,
        async () => {
          const { source } = connected.get(from.name)!
          const { target } = connected.get(to.name)!
          // The target table is created from the source's introspected columns.
          const collection = `from_${from.name}`
          await target.ensureCollection({
            ...collectionSchemaOf(await source.describeCollection(schema.name)),
            name: collection,
          })
          for await (const page of scanAll(source, schema.name, { pageSize: 3 }))
            await target.upsertMany(collection, page)
          expect(await target.find(collection, {}, { sort: { id: 1 } })).toEqual(ROWS)
          // and back again, through the other direction's conversion
          const back = `back_from_${to.name}`
          await source.ensureCollection({ ...schema, name: back })
          for await (const page of scanAll(target, collection, { pageSize: 4 })) await source.upsertMany(back, page)
          expect(await source.find(back, {}, { sort: { id: 1 } })).toEqual(ROWS)
        },
      )
    }
  }
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  EntityService,
  ReplicatorError,
  scanAll,
  type CollectionSchema,
  type Dialect,
  type EntitySchema,
  type Row,
} from '@mostajs/replicator-core'

/** How the contract suite obtains a connected dialect on a fresh, empty database. */
export interface DialectUnderTest {
  /** Label in test names (`postgres`, `mariadb`, `sqlite`). */
  name: string
  /** Null when the backend is unavailable; the suite is then skipped with `skipReason`. */
  connect: (() => Promise<{ dialect: Dialect; cleanup(): Promise<void> }>) | null
  skipReason?: string
}

const people: CollectionSchema = {
  name: 'people',
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'name', type: 'string', nullable: false },
    { name: 'age', type: 'integer' },
    { name: 'active', type: 'boolean' },
    { name: 'score', type: 'double' },
    { name: 'joined', type: 'timestamp' },
  ],
  primaryKey: ['id'],
}

const SEED: Row[] = [
  { id: 1, name: 'ada', age: 36, active: true, score: 9.5, joined: new Date('2020-01-01T00:00:00.001Z') },
  { id: 2, name: 'bob', age: 17, active: false, score: 4.25, joined: new Date('2021-06-15T12:30:00.000Z') },
  { id: 3, name: 'cy', age: null, active: true, score: 7, joined: null },
  { id: 4, name: 'dee', age: 52, active: null, score: -1.5, joined: new Date('2019-03-03T03:03:03.333Z') },
  { id: 5, name: 'eve', age: 17, active: true, score: 0, joined: new Date('2022-12-31T23:59:59.999Z') },
  { id: 6, name: 'fay', age: 29, active: false, score: null, joined: new Date('2020-02-29T10:00:00.500Z') },
  { id: 7, name: 'gus', age: 41, active: true, score: 3.75, joined: new Date('2018-07-07T07:07:07.070Z') },
  { id: 8, name: 'hal', age: null, active: false, score: 8, joined: new Date('2023-01-01T00:00:00.000Z') },
]

type Predicate = (row: Row) => boolean
const ids = (rows: Row[]) => rows.map((row) => row.id).sort((a, b) => Number(a) - Number(b))
const expectedIds = (predicate: Predicate) => SEED.filter(predicate).map((row) => row.id)

/** Asserts that `promise` rejects with a ReplicatorError of `code` and returns it. */
export async function expectReplicatorError(promise: Promise<unknown>, code: string): Promise<ReplicatorError> {
  let caught: unknown
  try {
    await promise
  } catch (error) {
    caught = error
  }
  expect(caught, `expected a ReplicatorError ${code}`).toBeDefined()
  expect(ReplicatorError.isInstance(caught), `not a ReplicatorError: ${String(caught)}`).toBe(true)
  expect((caught as ReplicatorError).code, (caught as Error).message).toBe(code)
  return caught as ReplicatorError
}

/** Expects `call` to throw a ReplicatorError of `code` at once (not a rejected promise); returns it. */
export function expectThrownReplicatorError(call: () => unknown, code: string): ReplicatorError {
  let caught: unknown
  try {
    call()
  } catch (error) {
    caught = error
  }
  expect(caught, `expected ${code} to be thrown at once`).toBeDefined()
  expect(ReplicatorError.isInstance(caught), `not a ReplicatorError: ${String(caught)}`).toBe(true)
  expect((caught as ReplicatorError).code, (caught as Error).message).toBe(code)
  return caught as ReplicatorError
}

/**
 * The contract every dialect passes against its real server: CRUD, the filter operators,
 * sort/skip/limit, idempotent upserts, deletes, keyset scans, transactions, introspection,
 * identifier quoting and the error codes of bad input.
 */
export function testDialectContract(subject: DialectUnderTest): void {
  const title = subject.connect
    ? `dialect contract: ${subject.name}`
    : `dialect contract: ${subject.name} (skipped: ${subject.skipReason})`
  describe.skipIf(!subject.connect)(title, () => {
    let dialect: Dialect
    let cleanup: () => Promise<void> = async () => {}

    beforeAll(async () => {
      const connected = await subject.connect!()
      dialect = connected.dialect
      cleanup = async () => {
        await dialect.close()
        await connected.cleanup()
      }
      await dialect.ensureCollection(people)
      await dialect.upsertMany('people', SEED)
    })

    afterAll(async () => {
      await cleanup()
    })

    it('declares its capabilities', () => {
      expect(dialect.capabilities.sql).toBe(true)
      expect(dialect.capabilities.maxParameters).toBeGreaterThan(900)
      expect(typeof dialect.capabilities.supportsReturning).toBe('boolean')
    })

    it('pings the server', async () => {
      expect(await dialect.ping()).toBeGreaterThanOrEqual(0)
    })

    it('reads back what it wrote, with portable values', async () => {
      const rows = await dialect.find('people', {}, { sort: { id: 1 } })
      expect(rows).toEqual(SEED)
    })

    describe('filters', () => {
      const cases: Array<[string, Record<string, unknown>, Predicate]> = [
        ['equality', { name: 'bob' }, (r) => r.name === 'bob'],
        ['$eq', { age: { $eq: 17 } }, (r) => r.age === 17],
        ['$ne keeps null cells', { age: { $ne: 17 } }, (r) => r.age !== 17],
        ['$gt', { age: { $gt: 36 } }, (r) => r.age !== null && (r.age as number) > 36],
        ['$gte', { age: { $gte: 36 } }, (r) => r.age !== null && (r.age as number) >= 36],
        ['$lt', { score: { $lt: 4.25 } }, (r) => r.score !== null && (r.score as number) < 4.25],
        ['$lte', { score: { $lte: 4.25 } }, (r) => r.score !== null && (r.score as number) <= 4.25],
        [
          'range',
          { age: { $gt: 17, $lt: 50 } },
          (r) => r.age !== null && (r.age as number) > 17 && (r.age as number) < 50,
        ],
        ['$in', { name: { $in: ['ada', 'eve', 'zed'] } }, (r) => ['ada', 'eve'].includes(r.name as string)],
        ['$in with null', { age: { $in: [17, null] } }, (r) => r.age === 17 || r.age === null],
        ['$in empty', { age: { $in: [] } }, () => false],
        ['$nin keeps null cells', { age: { $nin: [17, 36] } }, (r) => r.age !== 17 && r.age !== 36],
        ['$nin with null', { age: { $nin: [17, null] } }, (r) => r.age !== 17 && r.age !== null],
        ['null is IS NULL', { age: null }, (r) => r.age === null],
        ['$ne null', { age: { $ne: null } }, (r) => r.age !== null],
        ['boolean', { active: true }, (r) => r.active === true],
        ['boolean false', { active: false }, (r) => r.active === false],
        [
          'timestamp range',
          { joined: { $gte: new Date('2020-01-01T00:00:00.001Z'), $lt: new Date('2022-12-31T23:59:59.999Z') } },
          (r) =>
            r.joined instanceof Date &&
            r.joined.getTime() >= Date.parse('2020-01-01T00:00:00.001Z') &&
            r.joined.getTime() < Date.parse('2022-12-31T23:59:59.999Z'),
        ],
        ['$or', { $or: [{ name: 'ada' }, { age: { $gt: 50 } }] }, (r) => r.name === 'ada' || (r.age as number) > 50],
        [
          '$and',
          { $and: [{ active: true }, { score: { $gt: 5 } }] },
          (r) => r.active === true && (r.score as number) > 5,
        ],
        [
          'nested $or in $and',
          { $and: [{ $or: [{ age: 17 }, { age: null }] }, { active: false }] },
          (r) => (r.age === 17 || r.age === null) && r.active === false,
        ],
        ['empty $or', { $or: [] }, () => false],
      ]
      for (const [label, filter, predicate] of cases) {
        it(label, async () => {
          expect(ids(await dialect.find('people', filter))).toEqual(expectedIds(predicate))
          expect(await dialect.count('people', filter)).toBe(expectedIds(predicate).length)
        })
      }

      it('rejects an unknown operator and an unknown column', async () => {
        await expectReplicatorError(dialect.find('people', { age: { $regex: 'x' } }), 'FILTER_INVALID')
        await expectReplicatorError(dialect.find('people', { $nor: [] }), 'FILTER_INVALID')
        await expectReplicatorError(dialect.find('people', { nope: 1 }), 'COLUMN_NOT_FOUND')
      })
    })

    it('sorts (nulls first ascending), skips and limits', async () => {
      const rows = await dialect.find('people', {}, { sort: { age: 'asc', name: 'desc' }, skip: 1, limit: 4 })
      const expected = [...SEED]
        .sort((a, b) => {
          const left = a.age as number | null
          const right = b.age as number | null
          if (left !== right) return left === null ? -1 : right === null ? 1 : left - right
          return (b.name as string).localeCompare(a.name as string)
        })
        .slice(1, 5)
      expect(rows.map((row) => row.id)).toEqual(expected.map((row) => row.id))
      const descending = await dialect.find('people', {}, { sort: { score: -1 }, limit: 3 })
      expect(descending.map((row) => row.score)).toEqual([9.5, 8, 7])
      const skipped = await dialect.find('people', {}, { sort: { id: 1 }, skip: 6 })
      expect(skipped.map((row) => row.id)).toEqual([7, 8])
      const selected = await dialect.findOne('people', { id: 2 }, { select: ['id', 'name'] })
      expect(selected).toEqual({ id: 2, name: 'bob' })
    })

    it('inserts, updates with $set/$inc, and deletes by filter', async () => {
      await dialect.ensureCollection({
        name: 'crud',
        columns: [
          { name: 'id', type: 'string' },
          { name: 'n', type: 'integer' },
          { name: 'label', type: 'text' },
        ],
        primaryKey: ['id'],
      })
      const inserted = await dialect.insert('crud', { id: 'a', n: 1, label: 'first' })
      expect(inserted).toEqual({ id: 'a', n: 1, label: 'first' })
      await dialect.insert('crud', { id: 'b', n: 10 })
      expect(await dialect.update('crud', { id: 'a' }, { label: 'changed' })).toBe(1)
      expect(await dialect.update('crud', { n: { $gte: 1 } }, { $inc: { n: 5 } })).toBe(2)
      expect(await dialect.update('crud', { id: 'zzz' }, { label: 'none' })).toBe(0)
      expect(await dialect.find('crud', {}, { sort: { id: 1 } })).toEqual([
        { id: 'a', n: 6, label: 'changed' },
        { id: 'b', n: 15, label: null },
      ])
      expect(await dialect.delete('crud', { id: 'a' })).toBe(1)
      expect(await dialect.findOne('crud', { id: 'a' })).toBeNull()
      expect(await dialect.count('crud')).toBe(1)
      await expectReplicatorError(dialect.update('crud', { id: 'b' }, { $push: { n: 1 } }), 'FILTER_INVALID')
    })

    it('returns generated keys on insert', async () => {
      await dialect.query(autoIncrementTable(dialect.name))
      const first = await dialect.insert('serials', { label: 'x' })
      const second = await dialect.insert('serials', { label: 'y' })
      expect(first.label).toBe('x')
      expect(Number(second.id)).toBeGreaterThan(Number(first.id))
    })

    it('upsertMany is idempotent and replaces by key', async () => {
      await dialect.ensureCollection({
        name: 'upserts',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'v', type: 'string' },
          { name: 'n', type: 'bigint' },
        ],
        primaryKey: ['id'],
      })
      const batch = Array.from({ length: 600 }, (_, i) => ({ id: i, v: `v${i}`, n: BigInt(i) * 1_000_000_007n }))
      expect(await dialect.upsertMany('upserts', batch)).toBe(600)
      const once = await dialect.find('upserts', {}, { sort: { id: 1 } })
      await dialect.upsertMany('upserts', batch)
      const twice = await dialect.find('upserts', {}, { sort: { id: 1 } })
      expect(twice).toEqual(once)
      expect(twice).toEqual(batch)
      // changed values replace; a key repeated in one batch keeps its last row
      await dialect.upsertMany('upserts', [
        { id: 3, v: 'old', n: 1n },
        { id: 4, v: 'four', n: 4n },
        { id: 3, v: 'new', n: 3n },
      ])
      expect(await dialect.findOne('upserts', { id: 3 })).toEqual({ id: 3, v: 'new', n: 3n })
      expect(await dialect.findOne('upserts', { id: 4 })).toEqual({ id: 4, v: 'four', n: 4n })
      expect(await dialect.count('upserts')).toBe(600)
      // rows of different shapes in one call
      await dialect.upsertMany('upserts', [
        { id: 1000, v: 'a' },
        { id: 1001, n: 5n },
      ])
      expect(await dialect.findOne('upserts', { id: 1001 })).toEqual({ id: 1001, v: null, n: 5n })
      expect(await dialect.upsertMany('upserts', [])).toBe(0)
    })

    it('upsertMany carries awkward values unchanged, in a batch and row by row', async () => {
      await dialect.ensureCollection({
        name: 'awkward',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 's', type: 'string', length: 200 },
          { name: 't', type: 'text' },
          { name: 'j', type: 'json' },
          { name: 'd', type: 'double' },
          { name: 'b', type: 'boolean' },
          { name: 'n', type: 'bigint' },
        ],
        primaryKey: ['id'],
      })
      const strings = [
        '',
        'NULL',
        'null',
        '"',
        '\\',
        '\\"',
        'a,b',
        '{x}',
        '{"a":1}',
        ' lead and trail ',
        'tab\tnew\nline',
        'ünï©ødé ✓ 𝄞',
        "it's",
        '\\N',
      ]
      const rows: Row[] = strings.map((text, index) => ({
        id: index + 1,
        s: text,
        t: `${text}|${text}`,
        j: { text, list: [text, null, 1.5], nested: { q: '"\\' } },
        d: [0, -1.5, 1e-300, 1.7976931348623157e308, -0.25, 271 / 3, 0.1 + 0.2][index % 7]!,
        b: index % 3 === 0 ? null : index % 2 === 0,
        n: BigInt(index) * -9_007_199_254_740_993n,
      }))
      await dialect.upsertMany('awkward', rows) // one batch
      expect(await dialect.find('awkward', {}, { sort: { id: 1 } })).toEqual(rows)
      await dialect.deleteMany(
        'awkward',
        rows.map((row) => row.id as number),
      )
      for (const row of rows) await dialect.upsertMany('awkward', [row]) // one row per statement
      expect(await dialect.find('awkward', {}, { sort: { id: 1 } })).toEqual(rows)
    })

    it('timestamps keep their instant whatever the Node process time zone', async () => {
      const zone = process.env.TZ
      process.env.TZ = 'America/New_York'
      try {
        expect(new Date('2024-05-01T10:00:00.000Z').getHours()).toBe(6) // the zone is in effect
        await dialect.ensureCollection({
          name: 'instants',
          columns: [
            { name: 'id', type: 'integer' },
            { name: 'at', type: 'timestamp' },
          ],
          primaryKey: ['id'],
        })
        const at = new Date('2024-05-01T10:00:00.123Z')
        const rows: Row[] = [
          { id: 1, at },
          { id: 2, at: new Date('1999-12-31T23:59:59.999Z') },
          { id: 3, at: null },
        ]
        await dialect.upsertMany('instants', rows.slice(0, 1))
        await dialect.upsertMany('instants', rows.slice(1))
        expect(await dialect.find('instants', {}, { sort: { id: 1 } })).toEqual(rows)
        expect(ids(await dialect.find('instants', { at }))).toEqual([1])
      } finally {
        if (zone === undefined) delete process.env.TZ
        else process.env.TZ = zone
      }
    })

    it('deleteMany deletes by key, composite keys too', async () => {
      await dialect.ensureCollection({
        name: 'pairs',
        columns: [
          { name: 'a', type: 'string' },
          { name: 'b', type: 'integer' },
          { name: 'v', type: 'double' },
        ],
        primaryKey: ['a', 'b'],
      })
      const rows = Array.from({ length: 50 }, (_, i) => ({ a: `k${i % 5}`, b: i, v: i / 2 }))
      await dialect.upsertMany('pairs', rows)
      const doomed = rows.filter((row) => row.b % 3 === 0).map(({ a, b }) => ({ a, b }))
      expect(await dialect.deleteMany('pairs', [...doomed, { a: 'absent', b: 1 }])).toBe(doomed.length)
      expect(await dialect.count('pairs')).toBe(50 - doomed.length)
      expect(await dialect.findOne('pairs', { a: 'k0', b: 0 })).toBeNull()
      expect(await dialect.deleteMany('upserts', [1, 2, 99999])).toBe(2)
      expect(await dialect.findOne('upserts', { id: 1 })).toBeNull()
      await expectReplicatorError(dialect.deleteMany('pairs', ['k1']), 'FILTER_INVALID')
    })

    it('scans 10,000 rows by keyset pages without gaps or repeats', async () => {
      await dialect.ensureCollection({
        name: 'big',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'payload', type: 'string' },
        ],
        primaryKey: ['id'],
      })
      const total = 10_000
      // shuffled keys: the scan order must come from the key, not the insert order
      const keys = Array.from({ length: total }, (_, i) => i * 3 + 1).sort(() => Math.random() - 0.5)
      for (let start = 0; start < total; start += 1000) {
        await dialect.upsertMany(
          'big',
          keys.slice(start, start + 1000).map((id) => ({ id, payload: `p${id}` })),
        )
      }
      const seen: number[] = []
      let pages = 0
      for await (const page of scanAll(dialect, 'big', { pageSize: 997 })) {
        pages++
        for (const row of page) seen.push(row.id as number)
      }
      expect(pages).toBe(Math.ceil(total / 997))
      expect(seen.length).toBe(total)
      expect(new Set(seen).size).toBe(total)
      expect(seen).toEqual([...keys].sort((a, b) => a - b))
      const first = await dialect.scan('big', { limit: 2 })
      expect(first.rows.map((row) => row.id)).toEqual([1, 4])
      expect(first.next).toBe(4)
      const last = await dialect.scan('big', { after: (total - 1) * 3 + 1 - 3, limit: 5 })
      expect(last.rows.map((row) => row.id)).toEqual([(total - 1) * 3 + 1])
      expect(last.next).toBeNull()
    })

    it('scans composite keys in key order', async () => {
      const seen: string[] = []
      let after: unknown = null
      do {
        const page = await dialect.scan('pairs', { after, limit: 7 })
        for (const row of page.rows) seen.push(`${row.a}|${String(row.b).padStart(3, '0')}`)
        after = page.next
      } while (after !== null)
      const expected = (await dialect.find('pairs')).map((row) => `${row.a}|${String(row.b).padStart(3, '0')}`).sort()
      expect(seen).toEqual(expected)
    })

    it('commits and rolls back transactions ($transaction as the ORM spells it)', async () => {
      await dialect.ensureCollection({
        name: 'accounts',
        columns: [
          { name: 'id', type: 'string' },
          { name: 'balance', type: 'integer' },
        ],
        primaryKey: ['id'],
      })
      await dialect.upsertMany('accounts', [
        { id: 'a', balance: 100 },
        { id: 'b', balance: 0 },
      ])
      await dialect.$transaction(async (tx) => {
        await tx.update('accounts', { id: 'a' }, { $inc: { balance: -50 } })
        await tx.update('accounts', { id: 'b' }, { $inc: { balance: 50 } })
      })
      expect(await dialect.find('accounts', {}, { sort: { id: 1 } })).toEqual([
        { id: 'a', balance: 50 },
        { id: 'b', balance: 50 },
      ])
      await expect(
        dialect.transaction(async (tx) => {
          await tx.update('accounts', { id: 'a' }, { $inc: { balance: -50 } })
          await tx.upsertMany('accounts', [{ id: 'c', balance: 1 }])
          expect(await tx.count('accounts')).toBe(3)
          throw new Error('boom')
        }),
      ).rejects.toThrow('boom')
      expect(await dialect.find('accounts', {}, { sort: { id: 1 } })).toEqual([
        { id: 'a', balance: 50 },
        { id: 'b', balance: 50 },
      ])
      const value = await dialect.transaction(async (tx) => (await tx.findOne('accounts', { id: 'b' }))?.balance)
      expect(value).toBe(50)
    })

    it('describes a table it did not create (composite key)', async () => {
      await dialect.query(
        `CREATE TABLE ext_orders (region VARCHAR(20) NOT NULL, order_no INTEGER NOT NULL, amount DECIMAL(12,2), note TEXT, PRIMARY KEY (region, order_no))`,
      )
      const description = await dialect.describeCollection('ext_orders')
      expect(description.primaryKey).toEqual(['region', 'order_no'])
      expect(description.columns.map((column) => [column.name, column.type, column.nullable])).toEqual([
        ['region', 'string', false],
        ['order_no', 'integer', false],
        ['amount', 'decimal', true],
        ['note', 'text', true],
      ])
      const amount = description.columns.find((column) => column.name === 'amount')!
      expect([amount.precision, amount.scale]).toEqual([12, 2])
      await dialect.upsertMany('ext_orders', [
        { region: 'eu', order_no: 1, amount: '10.5', note: 'x' },
        { region: 'us', order_no: 1, amount: '-3', note: null },
      ])
      expect(await dialect.findOne('ext_orders', { region: 'eu', order_no: 1 })).toEqual({
        region: 'eu',
        order_no: 1,
        amount: '10.5',
        note: 'x',
      })
      expect(await dialect.listCollections()).toEqual(expect.arrayContaining(['people', 'ext_orders', 'pairs']))
    })

    it('ensureCollection is idempotent and keeps existing rows', async () => {
      const before = await dialect.describeCollection('people')
      const again = await dialect.ensureCollection(people)
      expect(again).toEqual(before)
      expect(await dialect.count('people')).toBe(SEED.length)
      expect(again.columns.map((column) => column.type)).toEqual(people.columns.map((column) => column.type))
    })

    it('creates tables from @mostajs/orm entity schemas and serves EntityService', async () => {
      const User: EntitySchema = {
        name: 'User',
        collection: 'users',
        fields: {
          email: { type: 'string', required: true },
          name: { type: 'string' },
          profile: { type: 'json' },
          admin: { type: 'boolean' },
        },
        timestamps: true,
        softDelete: true,
      }
      await dialect.ensureCollection(User)
      const service = new EntityService(dialect, [User])
      const events: string[] = []
      service.on('entity.created', (event) => events.push(`created:${event.entity}`))
      service.on('entity.updated', (event) => events.push(`updated:${event.entity}:${event.data.name}`))
      service.on('entity.deleted', (event) => events.push(`deleted:${event.entity}`))
      const alice = await service.create('User', {
        email: 'alice@example.com',
        name: 'Alice',
        profile: { tags: ['a'], n: 1 },
        admin: false,
      })
      expect(typeof alice.id).toBe('string')
      expect(alice.createdAt).toBeInstanceOf(Date)
      expect(await service.findById('User', alice.id)).toMatchObject({
        email: 'alice@example.com',
        profile: { tags: ['a'], n: 1 },
        admin: false,
      })
      const updated = await service.update('User', alice.id, { name: 'Alicia' })
      expect(updated?.name).toBe('Alicia')
      expect(await service.update('User', 'missing', { name: 'x' })).toBeNull()
      await service.create(User, { email: 'bob@example.com' })
      expect(await service.count('User')).toBe(2)
      expect((await service.findAll('User', {}, { sort: { email: 1 } })).map((user) => user.email)).toEqual([
        'alice@example.com',
        'bob@example.com',
      ])
      expect(await service.delete('User', alice.id)).toBe(true)
      expect(await service.delete('User', alice.id)).toBe(false)
      expect(await service.findById('User', alice.id)).toBeNull()
      expect(await service.count('User')).toBe(1)
      expect(await dialect.count('users')).toBe(2) // soft-deleted, still stored
      expect(events).toEqual(['created:User', 'updated:User:Alicia', 'created:User', 'deleted:User'])
      await service.dialect.$transaction(async (tx) => {
        await tx.update('users', { email: 'bob@example.com' }, { name: 'Bob' })
      })
      expect((await service.findOne('User', { email: 'bob@example.com' }))?.name).toBe('Bob')
    })

    it('quotes identifiers: a hostile collection name works and injects nothing', async () => {
      const hostile = 'weird "name"; drop table x'
      await dialect.ensureCollection({ name: 'x', columns: [{ name: 'id', type: 'integer' }], primaryKey: ['id'] })
      await dialect.upsertMany('x', [{ id: 1 }])
      const column = `it's a "col\`umn`
      await dialect.ensureCollection({
        name: hostile,
        columns: [
          { name: 'id', type: 'string' },
          { name: column, type: 'text' },
        ],
        primaryKey: ['id'],
      })
      await dialect.upsertMany(hostile, [
        { id: "'; --", [column]: 'v1' },
        { id: '"', [column]: 'v2' },
      ])
      await dialect.update(hostile, { id: '"' }, { [column]: 'v3' })
      expect(await dialect.find(hostile, { [column]: { $in: ['v1', 'v3'] } }, { sort: { id: 1 } })).toEqual(
        [
          { id: '"', [column]: 'v3' },
          { id: "'; --", [column]: 'v1' },
        ].sort((a, b) => (a.id < b.id ? -1 : 1)),
      )
      expect((await dialect.scan(hostile)).rows).toHaveLength(2)
      expect(await dialect.deleteMany(hostile, ["'; --"])).toBe(1)
      expect(await dialect.listCollections()).toEqual(expect.arrayContaining([hostile, 'x']))
      expect(await dialect.count('x')).toBe(1)
    })

    it('reports a missing table as COLLECTION_NOT_FOUND', async () => {
      await expectReplicatorError(dialect.find('no_such_table'), 'COLLECTION_NOT_FOUND')
      await expectReplicatorError(dialect.upsertMany('no_such_table', [{ id: 1 }]), 'COLLECTION_NOT_FOUND')
      await expectReplicatorError(dialect.describeCollection('no_such_table'), 'COLLECTION_NOT_FOUND')
      // a table dropped behind the cache's back
      await dialect.ensureCollection({
        name: 'dropped',
        columns: [{ name: 'id', type: 'integer' }],
        primaryKey: ['id'],
      })
      await dialect.count('dropped')
      await dialect.query('DROP TABLE dropped')
      await expectReplicatorError(dialect.find('dropped'), 'COLLECTION_NOT_FOUND')
    })

    it('rejects a bad batch as a whole, naming the collection and the failing keys', async () => {
      await dialect.ensureCollection({
        name: 'strict',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'email', type: 'string', nullable: false },
        ],
        primaryKey: ['id'],
      })
      await dialect.upsertMany('strict', [{ id: 1, email: 'kept@example.com' }])
      const batch = Array.from({ length: 20 }, (_, i) => ({
        id: 100 + i,
        email: i === 7 || i === 13 ? null : `u${i}@example.com`,
      }))
      const error = await expectReplicatorError(dialect.upsertMany('strict', batch), 'ROW_REJECTED')
      expect(error.message).toContain('"strict"')
      expect(error.message).toContain('107')
      expect(error.details.collection).toBe('strict')
      expect((error.details.failures as Array<{ key: unknown }>).map((failure) => failure.key)).toEqual([107, 113])
      expect(await dialect.count('strict')).toBe(1) // all or nothing: no row of the batch was written
      const insertError = await expectReplicatorError(
        dialect.insert('strict', { id: 1, email: 'dup@example.com' }),
        'ROW_REJECTED',
      )
      expect(insertError.message).toContain('strict')
      expect(insertError.details.key).toBe(1)
      await expectReplicatorError(dialect.upsertMany('strict', [{ email: 'no key' }]), 'ROW_REJECTED')
      // a rejected batch inside a transaction leaves the transaction usable
      await dialect.transaction(async (tx) => {
        await expectReplicatorError(tx.upsertMany('strict', [{ id: 2, email: null }]), 'ROW_REJECTED')
        await tx.upsertMany('strict', [{ id: 3, email: 'ok@example.com' }])
      })
      expect(await dialect.count('strict')).toBe(2)
    })

    it('runs raw SQL', async () => {
      const rows = await dialect.query<{ n: unknown }>('SELECT COUNT(*) AS n FROM people')
      expect(Number(rows[0]!.n)).toBe(SEED.length)
    })
  })
}

function autoIncrementTable(dialect: string): string {
  if (dialect === 'postgres') return 'CREATE TABLE serials (id SERIAL PRIMARY KEY, label TEXT)'
  if (dialect === 'sqlite') return 'CREATE TABLE serials (id INTEGER PRIMARY KEY, label TEXT)'
  return 'CREATE TABLE serials (id INT AUTO_INCREMENT PRIMARY KEY, label TEXT)'
}

import { describe, expect, it } from 'vitest'
import { scanAll, type Dialect, type Row } from '@mostajs/replicator-core'
import { expectReplicatorError, type DialectUnderTest } from './contract-helpers.js'
import { autoIncrementTable, expectedIds, ids, SEED, type Predicate } from './contract-fixtures.js'

/** Capabilities, reads, filters, sorts, writes, upserts, deletes and keyset scans of a connected dialect. */
export function readWriteContract(subject: DialectUnderTest, db: () => Dialect): void {
  it('declares its capabilities', () => {
    expect(db().capabilities.sql).toBe(true)
    expect(db().capabilities.maxParameters).toBeGreaterThan(900)
    expect(typeof db().capabilities.supportsReturning).toBe('boolean')
  })

  it('pings the server', async () => {
    expect(await db().ping()).toBeGreaterThanOrEqual(0)
  })

  it('reads back what it wrote, with portable values', async () => {
    const rows = await db().find('people', {}, { sort: { id: 1 } })
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
        expect(ids(await db().find('people', filter))).toEqual(expectedIds(predicate))
        expect(await db().count('people', filter)).toBe(expectedIds(predicate).length)
      })
    }

    it('rejects an unknown operator and an unknown column', async () => {
      await expectReplicatorError(db().find('people', { age: { $regex: 'x' } }), 'FILTER_INVALID')
      await expectReplicatorError(db().find('people', { $nor: [] }), 'FILTER_INVALID')
      await expectReplicatorError(db().find('people', { nope: 1 }), 'COLUMN_NOT_FOUND')
    })
  })

  it('sorts (nulls first ascending), skips and limits', async () => {
    const rows = await db().find('people', {}, { sort: { age: 'asc', name: 'desc' }, skip: 1, limit: 4 })
    const expected = [...SEED]
      .sort((a, b) => {
        const left = a.age as number | null
        const right = b.age as number | null
        if (left !== right) return left === null ? -1 : right === null ? 1 : left - right
        return (b.name as string).localeCompare(a.name as string)
      })
      .slice(1, 5)
    expect(rows.map((row) => row.id)).toEqual(expected.map((row) => row.id))
    const descending = await db().find('people', {}, { sort: { score: -1 }, limit: 3 })
    expect(descending.map((row) => row.score)).toEqual([9.5, 8, 7])
    const skipped = await db().find('people', {}, { sort: { id: 1 }, skip: 6 })
    expect(skipped.map((row) => row.id)).toEqual([7, 8])
    const selected = await db().findOne('people', { id: 2 }, { select: ['id', 'name'] })
    expect(selected).toEqual({ id: 2, name: 'bob' })
  })

  it('inserts, updates with $set/$inc, and deletes by filter', async () => {
    await db().ensureCollection({
      name: 'crud',
      columns: [
        { name: 'id', type: 'string' },
        { name: 'n', type: 'integer' },
        { name: 'label', type: 'text' },
      ],
      primaryKey: ['id'],
    })
    const inserted = await db().insert('crud', { id: 'a', n: 1, label: 'first' })
    expect(inserted).toEqual({ id: 'a', n: 1, label: 'first' })
    await db().insert('crud', { id: 'b', n: 10 })
    expect(await db().update('crud', { id: 'a' }, { label: 'changed' })).toBe(1)
    expect(await db().update('crud', { n: { $gte: 1 } }, { $inc: { n: 5 } })).toBe(2)
    expect(await db().update('crud', { id: 'zzz' }, { label: 'none' })).toBe(0)
    expect(await db().find('crud', {}, { sort: { id: 1 } })).toEqual([
      { id: 'a', n: 6, label: 'changed' },
      { id: 'b', n: 15, label: null },
    ])
    expect(await db().delete('crud', { id: 'a' })).toBe(1)
    expect(await db().findOne('crud', { id: 'a' })).toBeNull()
    expect(await db().count('crud')).toBe(1)
    await expectReplicatorError(db().update('crud', { id: 'b' }, { $push: { n: 1 } }), 'FILTER_INVALID')
  })

  it('returns generated keys on insert', async () => {
    await db().query(autoIncrementTable(db().name))
    const first = await db().insert('serials', { label: 'x' })
    const second = await db().insert('serials', { label: 'y' })
    expect(first.label).toBe('x')
    expect(Number(second.id)).toBeGreaterThan(Number(first.id))
  })

  it('upsertMany is idempotent and replaces by key', async () => {
    await db().ensureCollection({
      name: 'upserts',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'v', type: 'string' },
        { name: 'n', type: 'bigint' },
      ],
      primaryKey: ['id'],
    })
    const batch = Array.from({ length: 600 }, (_, i) => ({ id: i, v: `v${i}`, n: BigInt(i) * 1_000_000_007n }))
    expect(await db().upsertMany('upserts', batch)).toBe(600)
    const once = await db().find('upserts', {}, { sort: { id: 1 } })
    await db().upsertMany('upserts', batch)
    const twice = await db().find('upserts', {}, { sort: { id: 1 } })
    expect(twice).toEqual(once)
    expect(twice).toEqual(batch)
    // changed values replace; a key repeated in one batch keeps its last row
    await db().upsertMany('upserts', [
      { id: 3, v: 'old', n: 1n },
      { id: 4, v: 'four', n: 4n },
      { id: 3, v: 'new', n: 3n },
    ])
    expect(await db().findOne('upserts', { id: 3 })).toEqual({ id: 3, v: 'new', n: 3n })
    expect(await db().findOne('upserts', { id: 4 })).toEqual({ id: 4, v: 'four', n: 4n })
    expect(await db().count('upserts')).toBe(600)
    // rows of different shapes in one call
    await db().upsertMany('upserts', [
      { id: 1000, v: 'a' },
      { id: 1001, n: 5n },
    ])
    expect(await db().findOne('upserts', { id: 1001 })).toEqual({ id: 1001, v: null, n: 5n })
    expect(await db().upsertMany('upserts', [])).toBe(0)
  })

  it('upsertMany carries awkward values unchanged, in a batch and row by row', async () => {
    await db().ensureCollection({
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
    await db().upsertMany('awkward', rows) // one batch
    expect(await db().find('awkward', {}, { sort: { id: 1 } })).toEqual(rows)
    await db().deleteMany(
      'awkward',
      rows.map((row) => row.id as number),
    )
    for (const row of rows) await db().upsertMany('awkward', [row]) // one row per statement
    expect(await db().find('awkward', {}, { sort: { id: 1 } })).toEqual(rows)
  })

  it('timestamps keep their instant whatever the Node process time zone', async () => {
    const zone = process.env.TZ
    process.env.TZ = 'America/New_York'
    try {
      expect(new Date('2024-05-01T10:00:00.000Z').getHours()).toBe(6) // the zone is in effect
      await db().ensureCollection({
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
      await db().upsertMany('instants', rows.slice(0, 1))
      await db().upsertMany('instants', rows.slice(1))
      expect(await db().find('instants', {}, { sort: { id: 1 } })).toEqual(rows)
      expect(ids(await db().find('instants', { at }))).toEqual([1])
    } finally {
      if (zone === undefined) delete process.env.TZ
      else process.env.TZ = zone
    }
  })

  it('deleteMany deletes by key, composite keys too', async () => {
    await db().ensureCollection({
      name: 'pairs',
      columns: [
        { name: 'a', type: 'string' },
        { name: 'b', type: 'integer' },
        { name: 'v', type: 'double' },
      ],
      primaryKey: ['a', 'b'],
    })
    const rows = Array.from({ length: 50 }, (_, i) => ({ a: `k${i % 5}`, b: i, v: i / 2 }))
    await db().upsertMany('pairs', rows)
    const doomed = rows.filter((row) => row.b % 3 === 0).map(({ a, b }) => ({ a, b }))
    expect(await db().deleteMany('pairs', [...doomed, { a: 'absent', b: 1 }])).toBe(doomed.length)
    expect(await db().count('pairs')).toBe(50 - doomed.length)
    expect(await db().findOne('pairs', { a: 'k0', b: 0 })).toBeNull()
    expect(await db().deleteMany('upserts', [1, 2, 99999])).toBe(2)
    expect(await db().findOne('upserts', { id: 1 })).toBeNull()
    await expectReplicatorError(db().deleteMany('pairs', ['k1']), 'FILTER_INVALID')
  })

  it('scans 10,000 rows by keyset pages without gaps or repeats', async () => {
    await db().ensureCollection({
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
      await db().upsertMany(
        'big',
        keys.slice(start, start + 1000).map((id) => ({ id, payload: `p${id}` })),
      )
    }
    const seen: number[] = []
    let pages = 0
    for await (const page of scanAll(db(), 'big', { pageSize: 997 })) {
      pages++
      for (const row of page) seen.push(row.id as number)
    }
    expect(pages).toBe(Math.ceil(total / 997))
    expect(seen.length).toBe(total)
    expect(new Set(seen).size).toBe(total)
    expect(seen).toEqual([...keys].sort((a, b) => a - b))
    const first = await db().scan('big', { limit: 2 })
    expect(first.rows.map((row) => row.id)).toEqual([1, 4])
    expect(first.next).toBe(4)
    const last = await db().scan('big', { after: (total - 1) * 3 + 1 - 3, limit: 5 })
    expect(last.rows.map((row) => row.id)).toEqual([(total - 1) * 3 + 1])
    expect(last.next).toBeNull()
  })

  it('scans composite keys in key order', async () => {
    const seen: string[] = []
    let after: unknown = null
    do {
      const page = await db().scan('pairs', { after, limit: 7 })
      for (const row of page.rows) seen.push(`${row.a}|${String(row.b).padStart(3, '0')}`)
      after = page.next
    } while (after !== null)
    const expected = (await db().find('pairs')).map((row) => `${row.a}|${String(row.b).padStart(3, '0')}`).sort()
    expect(seen).toEqual(expected)
  })
}

import { expect, it } from 'vitest'
import { EntityService, type Dialect, type EntitySchema } from '@mostajs/replicator-core'
import { expectReplicatorError, type DialectUnderTest } from './contract-helpers.js'
import { people, SEED } from './contract-fixtures.js'

/** Transactions, introspection, schemas, identifier quoting, error codes and raw SQL of a connected dialect. */
export function schemaContract(subject: DialectUnderTest, db: () => Dialect): void {
  it('commits and rolls back transactions ($transaction as the ORM spells it)', async () => {
    await db().ensureCollection({
      name: 'accounts',
      columns: [
        { name: 'id', type: 'string' },
        { name: 'balance', type: 'integer' },
      ],
      primaryKey: ['id'],
    })
    await db().upsertMany('accounts', [
      { id: 'a', balance: 100 },
      { id: 'b', balance: 0 },
    ])
    await db().$transaction(async (tx) => {
      await tx.update('accounts', { id: 'a' }, { $inc: { balance: -50 } })
      await tx.update('accounts', { id: 'b' }, { $inc: { balance: 50 } })
    })
    expect(await db().find('accounts', {}, { sort: { id: 1 } })).toEqual([
      { id: 'a', balance: 50 },
      { id: 'b', balance: 50 },
    ])
    await expect(
      db().transaction(async (tx) => {
        await tx.update('accounts', { id: 'a' }, { $inc: { balance: -50 } })
        await tx.upsertMany('accounts', [{ id: 'c', balance: 1 }])
        expect(await tx.count('accounts')).toBe(3)
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(await db().find('accounts', {}, { sort: { id: 1 } })).toEqual([
      { id: 'a', balance: 50 },
      { id: 'b', balance: 50 },
    ])
    const value = await db().transaction(async (tx) => (await tx.findOne('accounts', { id: 'b' }))?.balance)
    expect(value).toBe(50)
  })

  it('describes a table it did not create (composite key)', async () => {
    await db().query(
      `CREATE TABLE ext_orders (region VARCHAR(20) NOT NULL, order_no INTEGER NOT NULL, amount DECIMAL(12,2), note TEXT, PRIMARY KEY (region, order_no))`,
    )
    const description = await db().describeCollection('ext_orders')
    expect(description.primaryKey).toEqual(['region', 'order_no'])
    expect(description.columns.map((column) => [column.name, column.type, column.nullable])).toEqual([
      ['region', 'string', false],
      ['order_no', 'integer', false],
      ['amount', 'decimal', true],
      ['note', 'text', true],
    ])
    const amount = description.columns.find((column) => column.name === 'amount')!
    expect([amount.precision, amount.scale]).toEqual([12, 2])
    await db().upsertMany('ext_orders', [
      { region: 'eu', order_no: 1, amount: '10.5', note: 'x' },
      { region: 'us', order_no: 1, amount: '-3', note: null },
    ])
    expect(await db().findOne('ext_orders', { region: 'eu', order_no: 1 })).toEqual({
      region: 'eu',
      order_no: 1,
      amount: '10.5',
      note: 'x',
    })
    expect(await db().listCollections()).toEqual(expect.arrayContaining(['people', 'ext_orders', 'pairs']))
  })

  it('ensureCollection is idempotent and keeps existing rows', async () => {
    const before = await db().describeCollection('people')
    const again = await db().ensureCollection(people)
    expect(again).toEqual(before)
    expect(await db().count('people')).toBe(SEED.length)
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
    await db().ensureCollection(User)
    const service = new EntityService(db(), [User])
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
    expect(await db().count('users')).toBe(2) // soft-deleted, still stored
    expect(events).toEqual(['created:User', 'updated:User:Alicia', 'created:User', 'deleted:User'])
    await service.dialect.$transaction(async (tx) => {
      await tx.update('users', { email: 'bob@example.com' }, { name: 'Bob' })
    })
    expect((await service.findOne('User', { email: 'bob@example.com' }))?.name).toBe('Bob')
  })

  it('quotes identifiers: a hostile collection name works and injects nothing', async () => {
    const hostile = 'weird "name"; drop table x'
    await db().ensureCollection({ name: 'x', columns: [{ name: 'id', type: 'integer' }], primaryKey: ['id'] })
    await db().upsertMany('x', [{ id: 1 }])
    const column = `it's a "col\`umn`
    await db().ensureCollection({
      name: hostile,
      columns: [
        { name: 'id', type: 'string' },
        { name: column, type: 'text' },
      ],
      primaryKey: ['id'],
    })
    await db().upsertMany(hostile, [
      { id: "'; --", [column]: 'v1' },
      { id: '"', [column]: 'v2' },
    ])
    await db().update(hostile, { id: '"' }, { [column]: 'v3' })
    expect(await db().find(hostile, { [column]: { $in: ['v1', 'v3'] } }, { sort: { id: 1 } })).toEqual(
      [
        { id: '"', [column]: 'v3' },
        { id: "'; --", [column]: 'v1' },
      ].sort((a, b) => (a.id < b.id ? -1 : 1)),
    )
    expect((await db().scan(hostile)).rows).toHaveLength(2)
    expect(await db().deleteMany(hostile, ["'; --"])).toBe(1)
    expect(await db().listCollections()).toEqual(expect.arrayContaining([hostile, 'x']))
    expect(await db().count('x')).toBe(1)
  })

  it('reports a missing table as COLLECTION_NOT_FOUND', async () => {
    await expectReplicatorError(db().find('no_such_table'), 'COLLECTION_NOT_FOUND')
    await expectReplicatorError(db().upsertMany('no_such_table', [{ id: 1 }]), 'COLLECTION_NOT_FOUND')
    await expectReplicatorError(db().describeCollection('no_such_table'), 'COLLECTION_NOT_FOUND')
    // a table dropped behind the cache's back
    await db().ensureCollection({
      name: 'dropped',
      columns: [{ name: 'id', type: 'integer' }],
      primaryKey: ['id'],
    })
    await db().count('dropped')
    await db().query('DROP TABLE dropped')
    await expectReplicatorError(db().find('dropped'), 'COLLECTION_NOT_FOUND')
  })

  it('rejects a bad batch as a whole, naming the collection and the failing keys', async () => {
    await db().ensureCollection({
      name: 'strict',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'email', type: 'string', nullable: false },
      ],
      primaryKey: ['id'],
    })
    await db().upsertMany('strict', [{ id: 1, email: 'kept@example.com' }])
    const batch = Array.from({ length: 20 }, (_, i) => ({
      id: 100 + i,
      email: i === 7 || i === 13 ? null : `u${i}@example.com`,
    }))
    const error = await expectReplicatorError(db().upsertMany('strict', batch), 'ROW_REJECTED')
    expect(error.message).toContain('"strict"')
    expect(error.message).toContain('107')
    expect(error.details.collection).toBe('strict')
    expect((error.details.failures as Array<{ key: unknown }>).map((failure) => failure.key)).toEqual([107, 113])
    expect(await db().count('strict')).toBe(1) // all or nothing: no row of the batch was written
    const insertError = await expectReplicatorError(
      db().insert('strict', { id: 1, email: 'dup@example.com' }),
      'ROW_REJECTED',
    )
    expect(insertError.message).toContain('strict')
    expect(insertError.details.key).toBe(1)
    await expectReplicatorError(db().upsertMany('strict', [{ email: 'no key' }]), 'ROW_REJECTED')
    // a rejected batch inside a transaction leaves the transaction usable
    await db().transaction(async (tx) => {
      await expectReplicatorError(tx.upsertMany('strict', [{ id: 2, email: null }]), 'ROW_REJECTED')
      await tx.upsertMany('strict', [{ id: 3, email: 'ok@example.com' }])
    })
    expect(await db().count('strict')).toBe(2)
  })

  it('runs raw SQL', async () => {
    const rows = await db().query<{ n: unknown }>('SELECT COUNT(*) AS n FROM people')
    expect(Number(rows[0]!.n)).toBe(SEED.length)
  })
}

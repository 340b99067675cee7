import '@mostajs/replicator-dialect-postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Dialect } from '@mostajs/replicator-core'
import { dialectUnderTest } from '@mostajs/replicator-testkit/vitest'

const subject = dialectUnderTest('postgres')

describe.skipIf(!subject.connect)(
  `postgres: timestamp without time zone${subject.skipReason ? ` (skipped: ${subject.skipReason})` : ''}`,
  () => {
    let dialect: Dialect
    let cleanup = async () => {}
    beforeAll(async () => {
      const connected = await subject.connect!()
      dialect = connected.dialect
      cleanup = async () => {
        await dialect.close()
        await connected.cleanup()
      }
    })
    afterAll(() => cleanup())

    it('is written and read as UTC, not as the Node process local time (one row and batches)', async () => {
      await dialect.query('CREATE TABLE wall_clock (id integer PRIMARY KEY, at timestamp(3))')
      const zone = process.env.TZ
      process.env.TZ = 'Asia/Kolkata'
      try {
        const at = new Date('2024-05-01T10:00:00.123Z')
        await dialect.upsertMany('wall_clock', [{ id: 1, at }])
        await dialect.upsertMany('wall_clock', [
          { id: 2, at },
          { id: 3, at },
        ])
        await dialect.insert('wall_clock', { id: 4, at })
        expect(
          (await dialect.find('wall_clock', {}, { sort: { id: 1 } })).map((row) => (row.at as Date).toISOString()),
        ).toEqual(Array(4).fill(at.toISOString()))
        // the server sees the UTC wall clock
        expect(await dialect.query(`SELECT to_char(at, 'HH24:MI:SS.MS') AS wall FROM wall_clock WHERE id = 2`)).toEqual(
          [{ wall: '10:00:00.123' }],
        )
        expect(await dialect.count('wall_clock', { at })).toBe(4)
      } finally {
        if (zone === undefined) delete process.env.TZ
        else process.env.TZ = zone
      }
    })
  },
)

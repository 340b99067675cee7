import { afterAll, describe, expect, it } from 'vitest'
import { expectReplicatorError, waitFor } from '@mostajs/replicator-testkit/vitest'
import { managedSqlitePair } from './fixtures/sqlite-pair.js'

// A read service (resolveReadService) does not write: a write on a managed slave would make it
// diverge from its master for good, and one on a native replica fails there anyway.

describe('read services refuse writes', () => {
  let close: (() => Promise<void>) | undefined
  afterAll(async () => close?.())

  it('on a managed slave and on the master it falls back to; raw reads pass; allowWrites opts out', async () => {
    const pair = await managedSqlitePair()
    close = pair.close
    const rm = pair.rm
    const note = await rm.resolveWriteService('app').create('Note', { text: 'on the master' })
    const reader = rm.resolveReadService('app')
    expect(rm.getReplicaStatus('app').find((replica) => replica.name === 'copy')!.readsRouted).toBe(1) // the slave serves it
    await waitFor(async () => (await reader.findById('Note', note.id)) !== null, 10_000, 'the note on the slave')

    const refused = await expectReplicatorError(reader.create('Note', { text: 'on the slave' }), 'READ_ONLY')
    expect(refused.message).toMatch(/resolveWriteService/)
    await expectReplicatorError(reader.update('Note', note.id, { text: 'changed on the slave' }), 'READ_ONLY')
    await expectReplicatorError(reader.delete('Note', note.id), 'READ_ONLY')
    await expectReplicatorError(reader.dialect.upsertMany('notes', [{ id: 'x', text: 'raw' }]), 'READ_ONLY')
    await expectReplicatorError(reader.dialect.query('DELETE FROM notes'), 'READ_ONLY')
    await expectReplicatorError(reader.dialect.query('SELECT * FROM notes FOR SHARE'), 'READ_ONLY') // a row lock
    await expectReplicatorError(reader.dialect.insertMany!('notes', [{ id: 'y', text: 'raw' }]), 'READ_ONLY')
    await expectReplicatorError(reader.dialect.deleteOne!('notes', { id: note.id }), 'READ_ONLY')
    await expectReplicatorError(reader.dialect.replaceOne!('notes', { id: note.id }, { text: 'raw' }), 'READ_ONLY')
    await expectReplicatorError(reader.dialect.ensureColumns('notes', [{ name: 'extra', type: 'text' }]), 'READ_ONLY')
    await expectReplicatorError(
      reader.dialect.query('WITH gone AS (DELETE FROM notes RETURNING id) SELECT count(*) FROM gone'),
      'READ_ONLY',
    )
    await expectReplicatorError(
      reader.dialect.transaction(async () => undefined),
      'READ_ONLY',
    )
    // reads, raw ones included, are served
    const [counted] = await reader.dialect.query<{ n: number | bigint }>(
      '/* how many */ SELECT count(*) AS n FROM notes',
    )
    expect(Number(counted!.n)).toBe(1)
    expect(await reader.findAll('Note')).toHaveLength(1)

    // the master, when reads fall back to it, is no more writable through a read service
    const strong = rm.resolveReadService('app', { consistency: 'strong' })
    await expectReplicatorError(strong.create('Note', { text: 'through a read service' }), 'READ_ONLY')
    // unless asked
    await rm.resolveReadService('app', { consistency: 'strong', allowWrites: true }).create('Note', { text: 'asked' })
    expect(await rm.resolveWriteService('app').count('Note')).toBe(2)
    await waitFor(async () => (await reader.count('Note')) === 2, 10_000, 'the slave follows the master only')

    // the same choice for a client of the application's own, with raw SQL on the routed connection
    const picked = rm.pickReplica('app')
    expect(picked).toMatchObject({ project: 'app', name: 'copy', role: 'slave', dialect: 'sqlite' })
    const [raw] = await picked.service.dialect.query<{ n: number | bigint }>('SELECT count(*) AS n FROM notes')
    expect(Number(raw!.n)).toBe(2)
    await expectReplicatorError(picked.service.dialect.query('DELETE FROM notes'), 'READ_ONLY')
    expect(rm.pickReplica('app', { consistency: 'strong' })).toMatchObject({ name: 'main', role: 'master' })
  })
})

import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager, type Dialect } from '@mostajs/replicator'
import { sqliteFile, startPostgres, startPostgresStandby, type RunningPostgres } from '@mostajs/replicator-testkit'
import { privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('postgres')

const rowsOf = async (dialect: Dialect) =>
  (await dialect.find('notes', {}, { sort: { id: 1 } })).map((row) => `${String(row.id)}:${String(row.text)}`)

describe.skipIf(!available)(
  `after promoteToMaster, a bidirectional rule merges what its stream had not read${skipNote}`,
  () => {
    let master: RunningPostgres
    let standby: RunningPostgres
    let standbyUri = ''
    const edgeFile = sqliteFile('edge.db')
    const manager = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    manager.on('error', () => undefined)

    beforeAll(async () => {
      master = await startPostgres()
      const masterUri = await master.createDatabase('shop')
      standby = await startPostgresStandby(master)
      standbyUri = Object.assign(new URL(masterUri), { port: String(standby.port) }).toString()
      await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
      // created on the master after the standby started: it arrives by streaming replication
      await manager.resolveWriteService('shop').dialect.ensureCollection({
        name: 'notes',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'text', type: 'string' },
          { name: 'updatedAt', type: 'timestamp' },
        ],
        primaryKey: ['id'],
      })
      await manager.addReplica('shop', {
        name: 'standby',
        role: 'slave',
        dialect: 'postgres',
        uri: standbyUri,
        lagTolerance: 2000,
      })
      await manager.addReplica('edge', { name: 'local', role: 'master', dialect: 'sqlite', uri: edgeFile.uri })
      await manager.addReplicationRule({
        name: 'both',
        source: 'shop',
        target: 'edge',
        mode: 'bidirectional',
        collections: ['notes'],
        conflictResolution: 'timestamp',
      })
    })

    afterAll(async () => {
      await manager.disconnectAll()
      await standby?.stop()
      await master?.stop()
      edgeFile.cleanup()
    })

    it('rows the old master changed after the last sync reach the other side; that side keeps its own writes, which reach the new master', async () => {
      const shop = () => manager.resolveWriteService('shop').dialect
      const edge = manager.resolveWriteService('edge').dialect
      const at = (minute: number) => new Date(Date.now() - 3_600_000 + minute * 60_000)
      await shop().upsertMany(
        'notes',
        Array.from({ length: 10 }, (_, index) => ({ id: index + 1, text: 'first', updatedAt: at(0) })),
      )
      await manager.sync('both')
      expect(await edge.count('notes')).toBe(10)
      // not synced before the promotion
      await shop().update('notes', { id: 1 }, { text: 'changed on the old master', updatedAt: at(2) })
      await shop().insert('notes', { id: 11, text: 'inserted on the old master', updatedAt: at(2) })
      await shop().update('notes', { id: 3 }, { text: 'older change on the old master', updatedAt: at(1) })
      await edge.update('notes', { id: 2 }, { text: 'changed on the edge', updatedAt: at(2) })
      await edge.update('notes', { id: 3 }, { text: 'newer change on the edge', updatedAt: at(3) })
      await waitFor(
        () => (manager.getReplicaStatus('shop').find((replica) => replica.name === 'standby')!.lag ?? Infinity) < 2000,
        20_000,
        'standby within tolerance',
      )
      await manager.promoteToMaster('shop', 'standby')
      for (let round = 0; round < 3; round++) await manager.sync('both')
      const newMaster = await connectDialect({ dialect: 'postgres', uri: standbyUri })
      try {
        const expected = [
          '1:changed on the old master',
          '2:changed on the edge',
          '3:newer change on the edge',
          ...[4, 5, 6, 7, 8, 9, 10].map((id) => `${id}:first`),
          '11:inserted on the old master',
        ]
        expect(await rowsOf(edge)).toEqual(expected)
        expect(await rowsOf(newMaster)).toEqual(expected)
      } finally {
        await newMaster.close()
      }
      expect(manager.getSyncStats('both').reseeds).toBe(1)
    })
  },
)

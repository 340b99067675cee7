import '@mostajs/replicator-dialect-sqlite'
import '@mostajs/replicator-dialect-postgres'
import { afterEach, describe, expect, it } from 'vitest'
import { ReplicationManager, type EntitySchema } from '@mostajs/replicator'
import { sqliteFile, type TempSqliteFile } from '@mostajs/replicator-testkit'
import { expectReplicatorError } from '@mostajs/replicator-testkit/vitest'

// These tests use real SQLite files: a master and "managed" slaves (the replicator would feed
// them; until a CDC rule does, their heartbeat never arrives and they never serve reads).
const files: TempSqliteFile[] = []
const managers: ReplicationManager[] = []
function file(): string {
  const created = sqliteFile()
  files.push(created)
  return created.uri
}
function manager(...args: ConstructorParameters<typeof ReplicationManager>): ReplicationManager {
  const created = new ReplicationManager(...args)
  managers.push(created)
  return created
}

afterEach(async () => {
  for (const created of managers.splice(0)) await created.disconnectAll()
  for (const created of files.splice(0)) created.cleanup()
})

const Note: EntitySchema = { name: 'Note', collection: 'notes', fields: { text: { type: 'text' } }, timestamps: true }

describe('ReplicationManager: instantiation, guards and bookkeeping', () => {
  it('starts empty', () => {
    const rm = manager()
    expect(rm.size).toBe(0)
    expect(rm.listProjects()).toEqual([])
    expect(rm.hasReplicas('any')).toBe(false)
  })

  it('adds and removes replicas, with events and schemas', async () => {
    const rm = manager(null, { heartbeatIntervalMs: 20 })
    const events: string[] = []
    rm.on('replica.added', (event) => events.push(`added:${event.name}`))
    rm.on('replica.removed', (event) => events.push(`removed:${event.name}`))
    await rm.addReplica(
      'notes',
      { name: 'main', role: 'master', dialect: 'sqlite', uri: file(), schemaStrategy: 'create' },
      [Note],
    )
    await rm.addReplica('notes', {
      name: 'copy',
      role: 'slave',
      dialect: 'sqlite',
      uri: file(),
      replication: 'managed',
      schemaStrategy: 'create',
    })
    expect(rm.size).toBe(2)
    expect(rm.hasReplicas('notes')).toBe(true)
    const written = await rm.resolveWriteService('notes').create('Note', { text: 'hello' })
    expect(written.createdAt).toBeInstanceOf(Date)
    // the managed slave has the table (schemaStrategy create) but no heartbeat: it never serves reads
    expect(await rm.resolveReadService('notes').count('Note')).toBe(1)
    const slave = rm.getReplicaStatus('notes').find((replica) => replica.name === 'copy')!
    expect(slave).toMatchObject({
      role: 'slave',
      replication: 'managed',
      status: 'lagging',
      lag: null,
      lagTolerance: 1000,
      weight: 1,
    })
    await rm.removeReplica('notes', 'copy')
    await rm.removeReplica('notes', 'main')
    expect(rm.size).toBe(0)
    expect(rm.listProjects()).toEqual([])
    expect(events).toEqual(['added:main', 'added:copy', 'removed:copy', 'removed:main'])
  })

  it('refuses bad input with clear errors and adds nothing', async () => {
    const rm = manager()
    await rm.addReplica('p', { name: 'main', role: 'master', dialect: 'sqlite', uri: file() })
    await expectReplicatorError(
      rm.addReplica('p', { name: 'main', role: 'slave', dialect: 'sqlite', uri: file(), replication: 'managed' }),
      'CONFIG_INVALID',
    )
    const second = await expectReplicatorError(
      rm.addReplica('p', { name: 'other', role: 'master', dialect: 'sqlite', uri: file() }),
      'CONFIG_INVALID',
    )
    expect(second.message).toContain('already has a master')
    await expectReplicatorError(
      rm.addReplica('p', { name: 'x', role: 'boss' as never, dialect: 'sqlite', uri: file() }),
      'CONFIG_INVALID',
    )
    const native = await expectReplicatorError(
      rm.addReplica('p', { name: 'y', role: 'slave', dialect: 'sqlite', uri: file() }),
      'CONFIG_INVALID',
    )
    expect(native.message).toContain("replication: 'managed'")
    const crossKind = await expectReplicatorError(
      rm.addReplica('p', { name: 'z', role: 'slave', dialect: 'postgres', uri: 'postgres://u@127.0.0.1:1/x' }),
      'CONFIG_INVALID',
    )
    expect(crossKind.message).toContain("Use replication: 'managed'")
    await expectReplicatorError(
      rm.addReplica('p', { name: 'w', role: 'slave', dialect: 'oracle', uri: 'oracle://x', replication: 'managed' }),
      'UNKNOWN_DIALECT',
    )
    await expectReplicatorError(
      rm.addReplica('p', {
        name: 'v',
        role: 'slave',
        dialect: 'sqlite',
        uri: file(),
        replication: 'managed',
        lagTolerance: -1,
      }),
      'CONFIG_INVALID',
    )
    const unreachable = await expectReplicatorError(
      rm.addReplica('q', {
        name: 'pg',
        role: 'master',
        dialect: 'postgres',
        uri: 'postgres://u:secret-pw@127.0.0.1:1/x',
      }),
      'CONNECTION_FAILED',
    )
    expect(unreachable.message).not.toContain('secret-pw')
    expect(rm.listProjects()).toEqual(['p'])
    expect(rm.size).toBe(1)
    expect(() => rm.resolveReadService('nope')).toThrow(expect.objectContaining({ code: 'REPLICA_NOT_FOUND' }))
    expect(() => rm.setReadRouting('p', 'fastest' as never)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    )
    await expectReplicatorError(rm.removeReplica('p', 'ghost'), 'REPLICA_NOT_FOUND')
    await expectReplicatorError(rm.promoteToMaster('p', 'main'), 'CONFIG_INVALID') // a master cannot be promoted
    await expectReplicatorError(rm.promoteToMaster('p', 'ghost'), 'REPLICA_NOT_FOUND')
  })

  it('checks projects against a ProjectManager and takes its schemas', async () => {
    const projectManager = {
      hasProject: (name: string) => name === 'known',
      getProject: (name: string) => (name === 'known' ? { schemas: [Note] } : undefined),
    }
    const rm = manager(projectManager)
    await expectReplicatorError(
      rm.addReplica('unknown', { name: 'm', role: 'master', dialect: 'sqlite', uri: file() }),
      'CONFIG_INVALID',
    )
    await rm.addReplica('known', {
      name: 'm',
      role: 'master',
      dialect: 'sqlite',
      uri: file(),
      schemaStrategy: 'create',
    })
    expect(await rm.resolveWriteService('known').count('Note')).toBe(0)
  })

  it('refuses to promote a slave whose lag is unknown, unless forced, and says what may be lost', async () => {
    const rm = manager(null, { heartbeatIntervalMs: 20 })
    await rm.addReplica('p', { name: 'main', role: 'master', dialect: 'sqlite', uri: file() })
    await rm.addReplica('p', { name: 'copy', role: 'slave', dialect: 'sqlite', uri: file(), replication: 'managed' })
    const refused = await expectReplicatorError(rm.promoteToMaster('p', 'copy'), 'LAG_TOO_HIGH')
    expect(refused.message).toContain('unknown lag')
    const before = rm.resolveWriteService('p')
    const result = await rm.promoteToMaster('p', 'copy', { force: true })
    expect(result).toMatchObject({ promoted: 'copy', previousMaster: 'main', forced: true, epoch: 1 })
    expect(result.possibleDataLoss).toMatch(/main/)
    await expectReplicatorError(before.count('anything'), 'FENCED')
    expect(rm.getReplicaStatus('p').map((replica) => [replica.name, replica.role, replica.status])).toEqual([
      ['main', 'slave', 'fenced'],
      ['copy', 'master', 'healthy'],
    ])
    expect(rm.getEpoch('p')).toBe(1)
  })

  it('autosaves the topology after each change', async () => {
    const tree = sqliteFile('tree.json')
    files.push(tree)
    const rm = manager()
    rm.enableAutoPersist(tree.path)
    await rm.addReplica('p', { name: 'main', role: 'master', dialect: 'sqlite', uri: file() })
    rm.setReadRouting('p', 'least-lag')
    await rm.flush()
    const { readTreeFile } = await import('@mostajs/replicator')
    const saved = await readTreeFile(tree.path)
    expect(saved.routing).toEqual({ p: 'least-lag' })
    expect(saved.replicas.p!.map((replica) => replica.name)).toEqual(['main'])
  })
})

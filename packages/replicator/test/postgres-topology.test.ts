import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connectDialect,
  ReplicationManager,
  ReplicatorError,
  type Dialect,
  type EntityService,
} from '@mostajs/replicator'
import { startPostgres, startPostgresStandby, type RunningPostgres } from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('postgres')

describe.skipIf(!available)(`ReplicationManager on a real PostgreSQL master with 3 native standbys${skipNote}`, () => {
  let master: RunningPostgres
  const standbys: RunningPostgres[] = []
  let masterUri = ''
  const standbyUris: string[] = []
  let manager: ReplicationManager
  const admin: Dialect[] = [] // direct connections to pause/resume replay
  const dir = mkdtempSync(join(tmpdir(), 'replicator-topology-'))

  const onPort = (port: number) => (url: string) => {
    const parsed = new URL(url)
    parsed.port = String(port)
    return parsed.toString()
  }
  const portOf = (service: EntityService) => Number(new URL(service.dialect.maskedUri).port)

  beforeAll(async () => {
    master = await startPostgres()
    masterUri = await master.createDatabase('shop')
    for (let i = 0; i < 3; i++) standbys.push(await startPostgresStandby(master))
    for (const standby of standbys) standbyUris.push(onPort(standby.port)(masterUri))
    for (const uri of standbyUris) admin.push(await connectDialect({ dialect: 'postgres', uri }))
    const setup = await connectDialect({ dialect: 'postgres', uri: masterUri })
    await setup.ensureCollection({
      name: 'items',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'label', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await setup.close()
    manager = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
    for (let i = 0; i < 3; i++)
      await manager.addReplica('shop', {
        name: `s${i + 1}`,
        role: 'slave',
        dialect: 'postgres',
        uri: standbyUris[i]!,
        lagTolerance: 500,
      })
  })

  afterAll(async () => {
    await manager?.disconnectAll()
    for (const dialect of admin) await dialect.close().catch(() => undefined)
    for (const standby of standbys) await standby.stop()
    await master?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('measures lag by heartbeat and marks every standby healthy', async () => {
    await waitFor(
      () => manager.getReplicaStatus('shop').every((replica) => replica.status === 'healthy'),
      15_000,
      'healthy standbys',
    )
    const status = manager.getReplicaStatus('shop')
    expect(status.map((replica) => [replica.name, replica.role])).toEqual([
      ['primary', 'master'],
      ['s1', 'slave'],
      ['s2', 'slave'],
      ['s3', 'slave'],
    ])
    for (const replica of status.filter((r) => r.role === 'slave')) {
      expect(replica.lag).not.toBeNull()
      expect(replica.lag!).toBeLessThanOrEqual(500)
      expect(replica.replication).toBe('native')
      expect(replica.uri).toContain(':****@')
      expect(BigInt(replica.appliedSequence!)).toBeGreaterThan(0n)
    }
    await waitFor(
      () =>
        manager
          .getReplicaStatus('shop')
          .slice(1)
          .every((replica) => replica.native?.role === 'replica'),
      5000,
      'native figures',
    )
    expect(JSON.stringify(status)).not.toContain(new URL(masterUri).password)
  })

  it('round-robin rotates exactly over the three standbys', () => {
    manager.setReadRouting('shop', 'round-robin')
    const ports = Array.from({ length: 9 }, () => portOf(manager.resolveReadService('shop')))
    const order = ports.slice(0, 3)
    expect(new Set(order)).toEqual(new Set(standbys.map((standby) => standby.port)))
    expect(ports).toEqual([...order, ...order, ...order])
    expect(portOf(manager.resolveReadService('shop', { consistency: 'strong' }))).toBe(master.port)
    expect(portOf(manager.resolveWriteService('shop'))).toBe(master.port)
  })

  it('a paused standby shows growing lag, leaves routing, and comes back when resumed', async () => {
    manager.setReadRouting('shop', 'least-lag')
    await admin[0]!.query('SELECT pg_wal_replay_pause()')
    await waitFor(
      () => manager.getReplicaStatus('shop').find((r) => r.name === 's1')!.status === 'lagging',
      10_000,
      's1 lagging',
    )
    const first = manager.getReplicaStatus('shop').find((r) => r.name === 's1')!.lag!
    await new Promise((resolve) => setTimeout(resolve, 300))
    const later = manager.getReplicaStatus('shop').find((r) => r.name === 's1')!
    expect(later.lag!).toBeGreaterThan(first)
    expect(later.lag!).toBeGreaterThan(500)
    await waitFor(
      () => manager.getReplicaStatus('shop').find((r) => r.name === 's1')!.native?.applying === false,
      5000,
      'native paused flag',
    )
    for (let i = 0; i < 200; i++) expect(portOf(manager.resolveReadService('shop'))).not.toBe(standbys[0]!.port)
    await admin[0]!.query('SELECT pg_wal_replay_resume()')
    await waitFor(
      () => manager.getReplicaStatus('shop').find((r) => r.name === 's1')!.status === 'healthy',
      10_000,
      's1 healthy again',
    )
  })

  it('a standby that goes down turns unhealthy, leaves routing, and comes back after it restarts', async () => {
    const states: string[] = []
    const listener = (event: { name: string; state: string }) => {
      if (event.name === 's3') states.push(event.state)
    }
    manager.on('replica.state', listener)
    try {
      await standbys[2]!.halt!()
      await waitFor(
        () => manager.getReplicaStatus('shop').find((r) => r.name === 's3')!.status === 'unhealthy',
        10_000,
        's3 unhealthy',
      )
      expect(manager.getReplicaStatus('shop').find((r) => r.name === 's3')!.consecutiveFailures).toBeGreaterThanOrEqual(
        3,
      )
      for (let i = 0; i < 100; i++) expect(portOf(manager.resolveReadService('shop'))).not.toBe(standbys[2]!.port)
      await standbys[2]!.resume!()
      await waitFor(
        () => manager.getReplicaStatus('shop').find((r) => r.name === 's3')!.status === 'healthy',
        20_000,
        's3 healthy again',
      )
      expect(states).toContain('unhealthy')
      expect(states[states.length - 1]).toBe('healthy')
    } finally {
      manager.off('replica.state', listener)
    }
  })

  it('read-your-writes: 1,000 write-then-read pairs never read stale with a lagging standby present', async () => {
    manager.setReadRouting('shop', 'round-robin')
    // s1 stops applying but stays "within tolerance" for plain reads: only the session protects from it.
    const relaxed = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    try {
      await relaxed.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
      for (let i = 0; i < 3; i++)
        await relaxed.addReplica('shop', {
          name: `s${i + 1}`,
          role: 'slave',
          dialect: 'postgres',
          uri: standbyUris[i]!,
          lagTolerance: 120_000,
        })
      await waitFor(
        () => relaxed.getReplicaStatus('shop').every((replica) => replica.status === 'healthy'),
        15_000,
        'relaxed healthy',
      )
      await admin[0]!.query('SELECT pg_wal_replay_pause()')
      const session = relaxed.session('shop')
      let stale = 0
      let fromStandbys = 0
      let plainStale = 0
      for (let i = 0; i < 1000; i++) {
        const id = 10_000 + i
        await session.write().create('items', { id, label: `v${i}` })
        if (i % 25 === 24) await new Promise((resolve) => setTimeout(resolve, 300)) // let healthy standbys catch up now and then
        const reader = session.read()
        if (portOf(reader) !== master.port) fromStandbys++
        const row = await reader.findById('items', id)
        if (row?.label !== `v${i}`) stale++
        const plain = relaxed.resolveReadService('shop')
        if (portOf(plain) === standbys[0]!.port && !(await plain.findById('items', id))) plainStale++
      }
      expect(stale).toBe(0)
      expect(fromStandbys).toBeGreaterThan(0) // the check really exercised standbys
      expect(plainStale).toBeGreaterThan(0) // …and without a session the lagging standby does serve stale reads
    } finally {
      await relaxed.disconnectAll()
      await admin[0]!.query('SELECT pg_wal_replay_resume()')
    }
  })

  it('refuses to promote a standby that lags beyond its tolerance', async () => {
    await admin[1]!.query('SELECT pg_wal_replay_pause()')
    await waitFor(
      () => manager.getReplicaStatus('shop').find((r) => r.name === 's2')!.status === 'lagging',
      10_000,
      's2 lagging',
    )
    const error = await expectReplicatorError(manager.promoteToMaster('shop', 's2'), 'LAG_TOO_HIGH')
    expect(error.message).toContain('force')
    await admin[1]!.query('SELECT pg_wal_replay_resume()')
    await waitFor(
      () => manager.getReplicaStatus('shop').find((r) => r.name === 's2')!.status === 'healthy',
      10_000,
      's2 healthy',
    )
  })

  it('saves the topology and a new manager reloads and reconnects it (${ENV} URIs)', async () => {
    const path = join(dir, 'tree.json')
    process.env.REPLICATOR_TEST_MASTER_URL = masterUri
    const referenced = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    try {
      await referenced.addReplica('shop', {
        name: 'primary',
        role: 'master',
        dialect: 'postgres',
        uri: '${REPLICATOR_TEST_MASTER_URL}',
      })
      await referenced.addReplica('shop', {
        name: 's3',
        role: 'slave',
        dialect: 'postgres',
        uri: standbyUris[2]!,
        lagTolerance: 750,
        weight: 2,
      })
      referenced.setReadRouting('shop', 'weighted')
      await referenced.saveToFile(path)
    } finally {
      await referenced.disconnectAll()
    }
    const saved = readFileSync(path, 'utf8')
    expect(saved).toContain('${REPLICATOR_TEST_MASTER_URL}')
    const reloaded = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 200 })
    try {
      await reloaded.loadFromFile(path)
      expect(reloaded.getReadRouting('shop')).toBe('weighted')
      await waitFor(
        () => reloaded.getReplicaStatus('shop').every((replica) => replica.status === 'healthy'),
        15_000,
        'reloaded healthy',
      )
      expect(reloaded.getReplicaStatus('shop').map((r) => [r.name, r.role, r.lagTolerance, r.weight])).toEqual([
        ['primary', 'master', 1000, 1],
        ['s3', 'slave', 750, 2],
      ])
      await reloaded.resolveWriteService('shop').create('items', { id: 999_999, label: 'written after reload' })
      expect((await reloaded.resolveWriteService('shop').findById('items', 999_999))?.label).toBe(
        'written after reload',
      )
    } finally {
      await reloaded.disconnectAll()
    }
    // bad files change nothing
    writeFileSync(path, saved.replace('"role": "slave"', '"role": "boss"'))
    const untouched = readFileSync(path, 'utf8')
    const broken = new ReplicationManager()
    const invalid = await expectReplicatorError(broken.loadFromFile(path), 'CONFIG_INVALID')
    expect(invalid.message).toContain('$.replicas.shop.s3.role')
    expect(readFileSync(path, 'utf8')).toBe(untouched)
    expect(broken.size).toBe(0)
    writeFileSync(path, saved)
    delete process.env.REPLICATOR_TEST_MASTER_URL
    const missingEnv = await expectReplicatorError(new ReplicationManager().loadFromFile(path), 'CONFIG_INVALID')
    expect(missingEnv.message).toContain('REPLICATOR_TEST_MASTER_URL')
  })

  it('promotes a real standby: pg_promote, old master read-only and fenced, others re-pointed', async () => {
    const writesBefore = manager.resolveWriteService('shop')
    const readsBefore = manager.resolveReadService('shop', { consistency: 'strong' })
    await writesBefore.create('items', { id: 1, label: 'before promotion' })
    const events: unknown[] = []
    manager.on('replica.promoted', (event) => events.push(event))
    const result = await manager.promoteToMaster('shop', 's3')
    expect(result).toMatchObject({
      project: 'shop',
      promoted: 's3',
      previousMaster: 'primary',
      epoch: 1,
      previousMasterReadOnly: true,
      forced: false,
      possibleDataLoss: null,
    })
    expect(result.repointed.sort()).toEqual(['s1', 's2'])
    expect(events).toHaveLength(1)
    // the new master has everything and takes writes
    const writes = manager.resolveWriteService('shop')
    expect(portOf(writes)).toBe(standbys[2]!.port)
    expect((await writes.findById('items', 1))?.label).toBe('before promotion')
    await writes.create('items', { id: 2, label: 'after promotion' })
    // services resolved before the promotion are fenced
    await expectReplicatorError(writesBefore.create('items', { id: 3, label: 'lost?' }), 'FENCED')
    await expectReplicatorError(readsBefore.count('items'), 'FENCED')
    // the old master itself refuses writes
    const oldMaster = await connectDialect({ dialect: 'postgres', uri: masterUri })
    try {
      await waitFor(
        async () => {
          try {
            await oldMaster.insert('items', { id: 4, label: 'direct' })
            return false
          } catch (error) {
            return ReplicatorError.isInstance(error) && /read-only/.test(error.message)
          }
        },
        5000,
        'old master read-only',
      )
    } finally {
      await oldMaster.close()
    }
    const status = manager.getReplicaStatus('shop')
    expect(status.find((r) => r.name === 'primary')).toMatchObject({ status: 'fenced', role: 'slave' })
    expect(status.find((r) => r.name === 's3')).toMatchObject({ role: 'master' })
    // re-pointed standbys follow the new master
    await waitFor(
      async () => (await admin[0]!.findOne('items', { id: 2 }))?.label === 'after promotion',
      20_000,
      's1 follows the new master',
    )
    await waitFor(
      () =>
        manager
          .getReplicaStatus('shop')
          .filter((r) => r.name === 's1' || r.name === 's2')
          .every((r) => r.status === 'healthy'),
      20_000,
      'standbys healthy under the new master',
    )
    expect([standbys[0]!.port, standbys[1]!.port]).toContain(portOf(manager.resolveReadService('shop')))
  })
})

import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type EntitySchema } from '@mostajs/replicator'
import { startPostgresPair, type PostgresPair } from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

// What a user of the original @mostajs/replicator 0.2 brings: its tree file (replicas and rules
// keyed by name, no version), its monitor reading the tree file, and the same monitor reading a
// live manager (getReplicaStatus(...).state, getSyncStats(...).inserted/…/durationMs).

const User: EntitySchema = { name: 'User', collection: 'users', fields: { email: { type: 'string' } } }
const { available, skipNote } = privateServer('postgres')
const ids = { u1: randomUUID(), u2: randomUUID() }

type Keyed = Record<string, Record<string, unknown>>

/** The tree reader of the original monitor: projects, replicas and rules are objects keyed by name. */
function readLikeOriginalMonitor(tree: { replicas: Record<string, Keyed>; rules?: Keyed; routing?: object }) {
  return {
    replicas: Object.entries(tree.replicas).flatMap(([project, byName]) =>
      Object.entries(byName).map(([name, replica]) => ({
        project,
        name,
        role: replica.role,
        dialect: replica.dialect,
      })),
    ),
    rules: Object.entries(tree.rules ?? {}).map(([name, rule]) => ({
      name,
      source: rule.source,
      target: rule.target,
      mode: rule.mode,
      collections: rule.collections,
      enabled: rule.enabled ?? true,
    })),
    routing: tree.routing ?? {},
  }
}

/** What the original monitor shows of a live manager (`startMonitor({ manager })`). */
function monitorView(manager: ReplicationManager) {
  return {
    replicas: Object.fromEntries(
      manager
        .listProjects()
        .map((project) => [
          project,
          manager.getReplicaStatus(project).map(({ name, role, dialect, state }) => ({ name, role, dialect, state })),
        ]),
    ),
    rules: manager.listRules().map((rule) => {
      const { inserted, updated, deleted, failed, durationMs } = manager.getSyncStats(rule.name)
      return { name: rule.name, enabled: rule.enabled, inserted, updated, deleted, failed, durationMs }
    }),
  }
}

describe.skipIf(!available)(`a tree file and a monitor of @mostajs/replicator 0.2${skipNote}`, () => {
  let pair: PostgresPair
  const dir = mkdtempSync(join(tmpdir(), 'replicator-original-tree-'))
  const managers: ReplicationManager[] = []
  let original: { replicas: Record<string, Keyed>; rules: Keyed; routing: Record<string, string> }

  const manager = () => {
    const rm = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 100 })
    managers.push(rm)
    return rm
  }
  const writeOriginal = (name: string, tree: object = original) => {
    const path = join(dir, name)
    writeFileSync(path, JSON.stringify(tree, null, 2))
    return path
  }

  beforeAll(async () => {
    pair = await startPostgresPair('shop', async (master) => {
      await master.ensureCollection(User)
      await master.upsertMany('users', [
        { id: ids.u1, email: 'a@example.com' },
        { id: ids.u2, email: 'b@example.com' },
      ])
    })
    process.env.ORIGINAL_TREE_STANDBY_URL = pair.standbyUri
    // as the original saveToFile wrote it: keyed by name, no version, no epochs
    original = {
      replicas: {
        shop: {
          primary: { role: 'master', dialect: 'postgres', uri: pair.masterUri, pool: { max: 5 } },
          standby: { role: 'slave', dialect: 'postgres', uri: '${ORIGINAL_TREE_STANDBY_URL}', lagTolerance: 5000 },
        },
        analytics: { lite: { role: 'master', dialect: 'sqlite', uri: `sqlite:${join(dir, 'analytics.db')}` } },
      },
      rules: {
        'shop-to-analytics': {
          source: 'shop',
          target: 'analytics',
          mode: 'cdc',
          collections: ['users'],
          conflictResolution: 'source-wins',
          enabled: true,
        },
      },
      routing: { shop: 'least-lag' },
    }
  })

  afterEach(async () => {
    // one manager at a time applies the rule (its lease): each test's managers stop with it
    for (const rm of managers.splice(0)) await rm.disconnectAll()
  })

  afterAll(async () => {
    await pair?.stop()
    delete process.env.ORIGINAL_TREE_STANDBY_URL
    rmSync(dir, { recursive: true, force: true })
  })

  it('loads as is, syncs, and reconnects from the same file after a restart (rule defaults filled in)', async () => {
    const path = writeOriginal('loads.json')
    const first = manager()
    await first.loadFromFile(path)
    expect(monitorView(first).replicas).toEqual({
      shop: [
        { name: 'primary', role: 'master', dialect: 'postgres', state: 'up' },
        { name: 'standby', role: 'slave', dialect: 'postgres', state: 'up' },
      ],
      analytics: [{ name: 'lite', role: 'master', dialect: 'sqlite', state: 'up' }],
    })
    expect(first.getReadRouting('shop')).toBe('least-lag')
    expect(first.listRules()).toEqual([
      {
        name: 'shop-to-analytics',
        source: 'shop',
        target: 'analytics',
        mode: 'cdc',
        collections: ['users'],
        conflictResolution: 'source-wins',
        enabled: true,
        timestampColumn: 'updatedAt',
        batchSize: 1000,
      },
    ])
    await waitFor(() => first.getRoutingStatus('shop').eligible.includes('standby'), 15_000, 'the standby eligible')
    const stats = await first.sync('shop-to-analytics')
    expect(stats.recordsSynced).toBe(2) // the snapshot
    expect(await first.resolveWriteService('analytics').count('users')).toBe(2)
    await first.disconnectAll()

    // a restart: the same file reconnects everything, and the rule resumes from its stored offset
    await pair.onMaster.upsertMany('users', [{ id: randomUUID(), email: 'c@example.com' }])
    const second = manager()
    await second.loadFromFile(path)
    expect(second.getReplicaStatus('shop').map((replica) => replica.state)).toEqual(['up', 'up'])
    const resumed = await second.sync('shop-to-analytics')
    expect([resumed.created, resumed.inserted]).toEqual([1, 1])
    expect(await second.resolveWriteService('analytics').count('users')).toBe(3)
    expect(readFileSync(path, 'utf8')).toBe(JSON.stringify(original, null, 2)) // loading rewrites nothing
  })

  it("the monitor's live view: each replica's state up/down, and each rule's inserted/updated/deleted/failed/durationMs", async () => {
    const tree = structuredClone(original)
    tree.replicas.shop!.ghost = { role: 'slave', dialect: 'postgres', uri: 'postgres://app@127.0.0.1:1/shop' }
    const rm = manager()
    await rm.loadFromFile(writeOriginal('live.json', tree))
    await rm.sync('shop-to-analytics')
    const writes = rm.resolveWriteService('shop')
    await writes.create('users', { id: randomUUID(), email: 'z@example.com' })
    await writes.update('users', ids.u1, { email: 'a2@example.com' })
    await writes.delete('users', ids.u2)
    const stats = await rm.sync('shop-to-analytics')
    const view = monitorView(rm)
    expect(view.replicas.shop).toEqual([
      { name: 'primary', role: 'master', dialect: 'postgres', state: 'up' },
      { name: 'standby', role: 'slave', dialect: 'postgres', state: 'up' },
      { name: 'ghost', role: 'slave', dialect: 'postgres', state: 'down' },
    ])
    expect(view.rules).toEqual([
      {
        name: 'shop-to-analytics',
        enabled: true,
        inserted: stats.created,
        updated: stats.updated,
        deleted: stats.deleted,
        failed: stats.errors,
        durationMs: stats.duration,
      },
    ])
    expect(stats.created).toBeGreaterThanOrEqual(1)
    expect(stats.updated).toBeGreaterThanOrEqual(1)
    expect(stats.deleted).toBeGreaterThanOrEqual(1)
    expect(rm.getSyncStats('shop-to-analytics').lastRun).toBeInstanceOf(Date)
  })

  it('saves a tree the original monitor reads with the same names, roles, rules and routing', async () => {
    const rm = manager()
    await rm.loadFromFile(writeOriginal('source.json'))
    const saved = join(dir, 'saved.json')
    await rm.saveToFile(saved)
    const file = JSON.parse(readFileSync(saved, 'utf8')) as typeof original & { version: number }
    const read = readLikeOriginalMonitor(file)
    const expected = readLikeOriginalMonitor(original)
    expect(read.replicas).toEqual(expected.replicas)
    expect(read.rules).toEqual(expected.rules)
    // the routing as set, and the default of the project that never set one
    expect(read.routing).toEqual({ ...expected.routing, analytics: 'round-robin' })
    expect(file.version).toBe(2)
    // and ours is kept: epochs, the ${ENV} reference as written
    expect(file).toMatchObject({ epochs: { shop: 0, analytics: 0 } })
    expect(file.replicas.shop!.standby!.uri).toBe('${ORIGINAL_TREE_STANDBY_URL}')
  })

  it('auto-persist over an original file says so and keeps the original beside it', async () => {
    const path = writeOriginal('autopersist.json')
    const text = readFileSync(path, 'utf8')
    const warnings: string[] = []
    const logger = {
      info: () => undefined,
      warn: (_: object, message: string) => warnings.push(message),
      error: () => undefined,
    }
    const rm = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 100, logger })
    managers.push(rm)
    const migrated: Array<{ path: string; from: unknown; backup: string }> = []
    rm.on('tree.migrated', (event) => migrated.push(event))
    await rm.loadFromFile(path)
    rm.enableAutoPersist(path)
    rm.setReadRouting('shop', 'round-robin')
    await rm.flush()
    expect(migrated).toEqual([{ path, from: '0.2', backup: `${path}.v0.2.bak` }])
    expect(warnings.filter((message) => /rewritten from the 0\.2 form/.test(message))).toHaveLength(1)
    expect(readFileSync(`${path}.v0.2.bak`, 'utf8')).toBe(text)
    expect(JSON.parse(readFileSync(path, 'utf8')).version).toBe(2)
    // later saves are of the current form: no more notices
    rm.setReadRouting('shop', 'least-lag')
    await rm.flush()
    expect(migrated).toHaveLength(1)
    const reloaded = manager()
    await reloaded.loadFromFile(path)
    expect(reloaded.getReadRouting('shop')).toBe('least-lag')
    expect(reloaded.listRules().map((rule) => rule.name)).toEqual(['shop-to-analytics'])
  })

  it('a masked password (***) is refused with its JSON path; nothing connects, nothing is written', async () => {
    const tree = structuredClone(original)
    const masked = new URL(pair.masterUri)
    masked.username = 'app'
    masked.password = '***'
    tree.replicas.shop!.primary!.uri = masked.toString().replace('%2A%2A%2A', '***')
    const path = writeOriginal('masked.json', tree)
    const text = readFileSync(path, 'utf8')
    expect(text).toContain(':***@')
    const rm = manager()
    const error = await expectReplicatorError(rm.loadFromFile(path), 'CONFIG_INVALID')
    expect(error.message).toContain('$.replicas.shop.primary.uri: holds a masked password')
    expect(error.message).toContain('${DB_PASSWORD}')
    expect(rm.listProjects()).toEqual([])
    expect(readFileSync(path, 'utf8')).toBe(text)
    expect(existsSync(`${path}.bak`)).toBe(false)
  })
})

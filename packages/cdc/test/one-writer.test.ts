import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, type Dialect, type DialectOperations } from '@mostajs/replicator-core'
import { DEFAULT_LEASE_MS, RuleRunner, type RunnerConfig } from '@mostajs/replicator-cdc'
import { ReplicationManager } from '@mostajs/replicator'
import { testBackends, waitFor, type TestBackend } from '@mostajs/replicator-testkit/vitest'
import { killRule, killRuleProcesses, startRule } from './fixtures/rule-process.js'

// One writer per rule: two processes given the same rule (two application instances, a restart
// that overlaps the old process) never both apply it. The second waits; it takes over when the
// first stops renewing its lease; a first writer that resumes after losing the lease is fenced.

const backends = testBackends()
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  killRuleProcesses()
  for (const cleanup of cleanups.reverse()) await cleanup()
})

/** A fresh database, and a second connection to it (as another process would hold). */
async function open(backend: TestBackend): Promise<{ dialect: Dialect; other: Dialect; uri: string }> {
  const database = await backend.freshDatabase()
  const dialect = await connectDialect({ dialect: backend.kind, uri: database.uri })
  const other = await connectDialect({ dialect: backend.kind, uri: database.uri })
  cleanups.push(async () => {
    await other.close()
    await dialect.close()
    await database.cleanup()
  })
  return { dialect, other, uri: database.uri }
}

const rule = (name: string): RunnerConfig => ({ name, source: 'a', target: 'b', mode: 'cdc', collections: ['items'] })
const schema = {
  name: 'items',
  columns: [
    { name: 'id', type: 'integer' as const },
    { name: 'label', type: 'string' as const },
  ],
  primaryKey: ['id'],
}

for (const to of ['sqlite', 'postgres', 'mariadb'] as const) {
  describe.skipIf(!backends[to].serverUrl)(`one writer per rule (sqlite → ${to})`, () => {
    it('a second process waits while the first holds the rule, and takes it over when the first stops renewing', async () => {
      const { dialect: source, other: sourceOfB } = await open(backends.sqlite)
      const { dialect: target, other: targetOfB } = await open(backends[to])
      await source.ensureCollection(schema)
      await source.upsertMany('items', [{ id: 1, label: 'one' }])
      const first = new RuleRunner(rule(`lease_${to}`), source, target, {}, { owner: 'first', leaseMs: 400 })
      const second = new RuleRunner(rule(`lease_${to}`), sourceOfB, targetOfB, {}, { owner: 'second', leaseMs: 400 })
      expect((await first.sync()).standby).toBeUndefined()
      await source.upsertMany('items', [{ id: 2, label: 'two' }])

      const waiting = await second.sync()
      expect(waiting.standby).toMatchObject({ owner: 'first' })
      expect(waiting.recordsSynced).toBe(0) // it applied nothing: the first still holds the rule
      expect(await target.count('items')).toBe(1)

      await sleep(450) // the first stops syncing (a dead process) and its lease expires
      const taken = await second.sync()
      expect(taken.standby).toBeUndefined()
      expect(taken.created).toBe(1)
      expect(await target.count('items')).toBe(2)

      // the first comes back: now it is the one that waits
      expect((await first.sync()).standby).toMatchObject({ owner: 'second' })
      await second.release() // a stopped runner lets the other take over at once
      await source.upsertMany('items', [{ id: 3, label: 'three' }])
      expect((await first.sync()).created).toBe(1)
      expect(await target.count('items')).toBe(3)
      await first.teardown()
    })

    it('a writer paused past its lease cannot overwrite the work of the one that took over (fenced)', async () => {
      const { dialect: source, other: sourceOfB } = await open(backends.sqlite)
      const { dialect: target, other: targetOfB } = await open(backends[to])
      await source.ensureCollection(schema)
      await source.upsertMany('items', [{ id: 1, label: 'v0' }])
      const paused = new RuleRunner(rule(`fence_${to}`), source, target, {}, { owner: 'paused', leaseMs: 400 })
      const successor = new RuleRunner(rule(`fence_${to}`), sourceOfB, targetOfB, {}, { owner: 'next', leaseMs: 400 })
      await paused.sync()

      // the paused process stops just before its target transaction (a GC pause, SIGSTOP)
      let reached!: () => void
      const atTransaction = new Promise<void>((resolve) => (reached = resolve))
      let resume!: () => void
      const resumed = new Promise<void>((resolve) => (resume = resolve))
      const transaction = target.transaction.bind(target)
      target.transaction = async <T>(fn: (tx: DialectOperations) => Promise<T>): Promise<T> => {
        reached()
        await resumed
        return transaction(fn)
      }
      await source.update('items', { id: 1 }, { $set: { label: 'old' } })
      const stale = paused.sync()
      stale.catch(() => undefined)
      await atTransaction
      await sleep(450)

      await source.update('items', { id: 1 }, { $set: { label: 'new' } })
      const taken = await successor.sync()
      expect(taken.standby).toBeUndefined()
      expect(await target.findOne('items', { id: 1 })).toMatchObject({ label: 'new' })

      resume()
      await expect(stale).rejects.toMatchObject({ code: 'FENCED' })
      expect(await target.findOne('items', { id: 1 })).toMatchObject({ label: 'new' }) // not set back to 'old'
      target.transaction = transaction
      await successor.teardown()
    })
  })
}

describe('one writer per rule across managers', () => {
  it('two application instances with the same rule: one applies it, the other waits; closing the first hands it over at once', async () => {
    const { dialect: source, uri: sourceUri } = await open(backends.sqlite)
    const { dialect: target, uri: targetUri } = await open(backends.sqlite)
    await source.ensureCollection(schema)
    const instances = ['a', 'b'].map(
      (id) => new ReplicationManager(null, { heartbeatId: `instance-${id}`, ruleLeaseMs: 60_000 }),
    )
    for (const rm of instances) {
      cleanups.push(() => rm.disconnectAll())
      await rm.addReplica('shop', { name: 'main', role: 'master', dialect: 'sqlite', uri: sourceUri })
      await rm.addReplica('copy', { name: 'main', role: 'master', dialect: 'sqlite', uri: targetUri })
      await rm.addReplicationRule({
        name: 'shared',
        source: 'shop',
        target: 'copy',
        mode: 'cdc',
        collections: ['items'],
      })
    }
    const [first, second] = instances as [ReplicationManager, ReplicationManager]
    await source.upsertMany('items', [{ id: 1, label: 'one' }])
    expect((await first.sync('shared')).created).toBe(1)
    await source.upsertMany('items', [{ id: 2, label: 'two' }])
    const waiting = await second.sync('shared')
    expect(waiting.standby).toMatchObject({ owner: 'instance-a' })
    expect(await target.count('items')).toBe(1)

    await first.disconnectAll() // a graceful shutdown releases the rule: no wait for the 60 s lease
    const taken = await second.sync('shared')
    expect(taken.standby).toBeUndefined()
    expect(await target.count('items')).toBe(2)
  })
})

describe.skipIf(!backends.postgres.serverUrl)('the process applying a rule is killed (kill -9)', () => {
  it('another process takes the rule over within 10 s with the default lease, and nothing is lost', async () => {
    const source = await open(backends.postgres)
    const target = await open(backends.postgres)
    await source.dialect.ensureCollection(schema)
    await source.dialect.upsertMany('items', [{ id: 1, label: 'before' }])
    const worker = await startRule(['postgres', source.uri, 'postgres', target.uri, 'handover', 'items'])
    await waitFor(async () => (await target.dialect.count('items').catch(() => 0)) === 1, 15_000, 'the worker applies')
    const successor = new RuleRunner(
      { name: 'handover', source: 'a', target: 'b', mode: 'cdc', collections: ['items'] },
      source.other,
      target.other,
      {},
      { owner: 'the other process' }, // default lease
    )
    expect((await successor.sync()).standby?.owner).toBe('crash-test:handover')
    await killRule(worker)
    const killedAt = Date.now()
    await source.dialect.upsertMany('items', [{ id: 2, label: 'after the kill' }])
    let stats = await successor.sync()
    while (stats.standby) {
      await sleep(100)
      stats = await successor.sync()
    }
    const takeoverMs = Date.now() - killedAt
    console.log(`rule taken over ${takeoverMs} ms after its process was killed (lease ${DEFAULT_LEASE_MS} ms)`)
    expect(takeoverMs).toBeLessThan(10_000)
    expect((await target.dialect.find('items', {}, { sort: { id: 1 } })).map((row) => row.label)).toEqual([
      'before',
      'after the kill',
    ])
    await successor.teardown()
  })
})

describe.skipIf(!backends.postgres.serverUrl)('a batch that runs longer than the lease', () => {
  it('is not taken over half-way: it commits, and the other process keeps waiting', async () => {
    const source = await open(backends.sqlite)
    const target = await open(backends.postgres)
    await source.dialect.ensureCollection(schema)
    await target.dialect.ensureCollection(schema)
    const leaseMs = 300
    const first = new RuleRunner(rule('slow'), source.dialect, target.dialect, {}, { owner: 'first', leaseMs })
    await first.sync()
    // every row the target takes costs it 100 ms: a batch of 10 runs about 1 s, past the lease
    await target.dialect.query(`CREATE FUNCTION slow_insert() RETURNS trigger AS $$
      BEGIN PERFORM pg_sleep(0.1); RETURN NEW; END $$ LANGUAGE plpgsql`)
    await target.dialect.query('CREATE TRIGGER slow BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION slow_insert()')
    await source.dialect.upsertMany(
      'items',
      Array.from({ length: 10 }, (_, index) => ({ id: index + 1, label: `i${index + 1}` })),
    )
    const second = new RuleRunner(rule('slow'), source.other, target.other, {}, { owner: 'second', leaseMs })
    const applying = first.sync()
    await sleep(leaseMs * 2) // the first's lease ran out while its batch runs
    const waiting = await second.sync()
    expect(await applying).toMatchObject({ created: 10 }) // committed, not FENCED
    expect(waiting.standby?.owner).toBe('first')
    expect(await target.dialect.count('items')).toBe(10)
    await first.teardown()
  })
})

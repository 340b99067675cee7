import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { connectDialect, type Dialect, type DialectOperations } from '@mostajs/replicator-core'
import { RuleRunner, type RunnerConfig } from '@mostajs/replicator-cdc'
import { ReplicationManager } from '@mostajs/replicator'
import { testBackends, type TestBackend } from '@mostajs/replicator-testkit/vitest'

// One writer per rule: two processes given the same rule (two application instances, a restart
// that overlaps the old process) never both apply it. The second waits; it takes over when the
// first stops renewing its lease; a first writer that resumes after losing the lease is fenced.

const backends = testBackends()
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
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

import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type EntitySchema } from '@mostajs/replicator'
import { expectReplicatorError, testBackends, waitFor } from '@mostajs/replicator-testkit/vitest'

const backends = testBackends()
const User: EntitySchema = {
  name: 'User',
  collection: 'users',
  fields: { email: { type: 'string', required: true } },
  timestamps: true,
}
const Client: EntitySchema = { name: 'Client', collection: 'clients', fields: { name: { type: 'string' } } }

describe.skipIf(!backends.postgres.serverUrl)(
  `the original README's rule API, verbatim${backends.postgres.serverUrl ? '' : ` (skipped: ${backends.postgres.skipReason})`}`,
  () => {
    const replicator = new ReplicationManager()
    const dir = mkdtempSync(join(tmpdir(), 'replicator-original-api-'))
    const cleanups: Array<() => Promise<void>> = []
    afterAll(async () => {
      await replicator.disconnectAll()
      for (const cleanup of cleanups) await cleanup()
      rmSync(dir, { recursive: true, force: true })
    })

    it('addReplicationRule without await registers the rule at once; sync waits for its preparation', async () => {
      const source = await backends.postgres.freshDatabase()
      const target = await backends.sqlite.freshDatabase()
      cleanups.push(source.cleanup, target.cleanup)
      const master = { role: 'master' as const, schemaStrategy: 'create' as const }
      await replicator.addReplica('secuaccess', { name: 'pg', dialect: 'postgres', uri: source.uri, ...master }, [
        User,
        Client,
      ])
      await replicator.addReplica('analytics', { name: 'lite', dialect: 'sqlite', uri: target.uri, ...master })
      const users = replicator.resolveWriteService('secuaccess')
      await users.create('User', { email: 'a@example.com' })
      await users.create('Client', { name: 'Acme' })

      // The original's lines, as written there (no await):
      // eslint-disable-next-line @typescript-eslint/no-floating-promises
      replicator.addReplicationRule({
        name: 'pg-to-analytics',
        source: 'secuaccess',
        target: 'analytics',
        mode: 'cdc',
        collections: ['users', 'clients'],
        conflictResolution: 'source-wins',
      }) // no await
      expect(replicator.listRules()).toEqual([
        {
          name: 'pg-to-analytics',
          source: 'secuaccess',
          target: 'analytics',
          mode: 'cdc',
          collections: ['users', 'clients'],
          conflictResolution: 'source-wins',
          enabled: true,
          batchSize: 1000,
          timestampColumn: 'updatedAt',
        },
      ])
      await replicator.sync('pg-to-analytics')
      const tree = join(dir, 'replicator-tree.json')
      replicator.enableAutoPersist(tree)

      const analytics = replicator.resolveWriteService('analytics')
      expect((await analytics.findAll('users')).map((row) => row.email)).toEqual(['a@example.com'])
      expect((await analytics.findAll('clients')).map((row) => row.name)).toEqual(['Acme'])
      await replicator.flush()
      // keyed by name, as the original saveToFile wrote it
      expect(JSON.parse(readFileSync(tree, 'utf8')).rules).toEqual({
        'pg-to-analytics': {
          source: 'secuaccess',
          target: 'analytics',
          mode: 'cdc',
          collections: ['users', 'clients'],
          conflictResolution: 'source-wins',
        },
      })
    })

    it('a rule whose preparation fails is removed again and reported, without an unhandled rejection', async () => {
      const errors: unknown[] = []
      replicator.on('error', (error) => errors.push(error))
      const unhandled: unknown[] = []
      const onUnhandled = (reason: unknown) => unhandled.push(reason)
      process.on('unhandledRejection', onUnhandled)
      try {
        // eslint-disable-next-line @typescript-eslint/no-floating-promises -- what a caller without await does
        replicator.addReplicationRule({
          name: 'missing-table',
          source: 'secuaccess',
          target: 'analytics',
          mode: 'cdc',
          collections: ['no_such_table'],
        }) // no await
        expect(replicator.listRules().map((rule) => rule.name)).toContain('missing-table')
        await expectReplicatorError(replicator.sync('missing-table'), 'COLLECTION_NOT_FOUND')
        await waitFor(() => errors.length > 0, 5000)
        expect(replicator.listRules().map((rule) => rule.name)).not.toContain('missing-table')
        await new Promise((resolve) => setTimeout(resolve, 50))
        expect(unhandled).toEqual([])
        // the same name can be added again once fixed
        await replicator.addReplicationRule({
          name: 'missing-table',
          source: 'secuaccess',
          target: 'analytics',
          mode: 'cdc',
          collections: ['users'],
        })
        expect((await replicator.sync('missing-table')).recordsSynced).toBeGreaterThanOrEqual(1)
        await replicator.removeReplicationRule('missing-table')
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
    })
  },
)

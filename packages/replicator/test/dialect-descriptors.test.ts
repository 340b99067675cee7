import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicatedDialect } from '@mostajs/replicator-kysely'
import { ReplicationManager } from '@mostajs/replicator'
import {
  createDialect,
  DIALECT_PACKAGE_NAMES,
  dialectDescriptor,
  dialectDescriptors,
  registerDialect,
  type Dialect,
} from '@mostajs/replicator-core'
import { sqliteFile, type TempSqliteFile } from '@mostajs/replicator-testkit'
import { expectReplicatorError } from '@mostajs/replicator-testkit/vitest'

// Dialect facts live in one descriptor per database kind, registered by its package. The
// README's table is checked against the registry, and a fourth kind registered by a package of
// its own (here one that stores in SQLite) is routed, validated and compiled for like the others.

const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8')

/** The rows of the README's `## Dialects` table, cells without their backquotes. */
function readmeDialectRows(): string[][] {
  const section = readme.split('\n## Dialects\n')[1]!.split('\n## ')[0]!
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) =>
      line
        .slice(1, -1)
        .split('|')
        .map((cell) => cell.trim().replaceAll('`', '')),
    )
}

describe('dialect descriptors', () => {
  const files: TempSqliteFile[] = []
  const managers: ReplicationManager[] = []
  afterAll(async () => {
    for (const rm of managers) await rm.disconnectAll()
    for (const file of files) file.cleanup()
  })

  it("the README's dialect table is the registry", () => {
    const rows = dialectDescriptors()
      .filter((descriptor) => descriptor.packageName.startsWith('@mostajs/'))
      .map((descriptor) => [
        descriptor.name,
        (descriptor.aliases ?? []).join(', '),
        descriptor.label,
        descriptor.packageName,
        descriptor.sqlFamily,
        descriptor.replicationFamily ?? 'none (slaves are managed)',
        descriptor.oldMasterRejoins ? 'yes' : 'no',
      ])
    expect(readmeDialectRows()).toEqual(rows)
    expect(rows.map((row) => row[0])).toEqual(['mariadb', 'mysql', 'postgres', 'sqlite'])
    // the loader's package list names exactly the packages that register these descriptors
    expect(Object.keys(DIALECT_PACKAGE_NAMES).sort()).toEqual([...new Set(rows.map((row) => row[3]))].sort())
    for (const [packageName, names] of Object.entries(DIALECT_PACKAGE_NAMES))
      for (const name of names) expect(dialectDescriptor(name)?.packageName).toBe(packageName)
  })

  it('a fourth kind, registered by its own package, is created, validated and compiled for from its descriptor', async () => {
    // what a package `@example/replicator-dialect-litefs` would do when imported
    const sqlite = dialectDescriptor('sqlite')!
    registerDialect({
      name: 'litefs',
      aliases: ['lfs'],
      label: 'LiteFS',
      packageName: '@example/replicator-dialect-litefs',
      sqlFamily: 'sqlite',
      replicationFamily: null,
      oldMasterRejoins: false,
      create: (config) => sqlite.create({ ...config, dialect: 'sqlite' }),
    })
    expect(dialectDescriptor('LFS')?.name).toBe('litefs')
    const master = sqliteFile('litefs-master.db')
    const slave = sqliteFile('litefs-slave.db')
    files.push(master, slave)
    const rm = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 100 })
    managers.push(rm)
    await rm.addReplica('edge', { name: 'main', role: 'master', dialect: 'litefs', uri: master.uri })
    // no native replication: the descriptor says so, and the message names the database
    const refused = await expectReplicatorError(
      rm.addReplica('edge', { name: 'copy', role: 'slave', dialect: 'lfs', uri: slave.uri }),
      'CONFIG_INVALID',
    )
    expect(refused.message).toContain("LiteFS has no native replication; add it with replication: 'managed'")
    await rm.addReplica('edge', { name: 'copy', role: 'slave', dialect: 'lfs', uri: slave.uri, replication: 'managed' })
    const writes = rm.resolveWriteService('edge')
    await writes.dialect.ensureCollection({
      name: 'notes',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'text', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await writes.create('notes', { id: 1, text: 'through litefs' })
    expect(await writes.findById('notes', 1)).toMatchObject({ text: 'through litefs' })
    // Kysely compiles for its SQL family
    const kysely = new ReplicatedDialect({ manager: rm, project: 'edge' })
    expect(kysely.createQueryCompiler().constructor.name).toBe('SqliteQueryCompiler')
  })

  it('an unknown name names the registered kinds and the package of a known one', async () => {
    const unknown = (() => {
      try {
        createDialect({ dialect: 'oracle', uri: 'oracle://x' })
      } catch (error) {
        return error as Error
      }
      return null
    })()
    expect(unknown?.message).toMatch(/Known dialects: postgres, postgresql, mysql, mariadb, sqlite, sqlite3/)
    const dialect: Dialect = createDialect({ dialect: 'PostgreSQL', uri: 'postgres://u@127.0.0.1:1/x' })
    expect(dialect.name).toBe('postgres')
  })
})

import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testBackends } from '@mostajs/replicator-testkit/vitest'

// The packages as a user gets them: `pnpm pack` tarballs installed with npm into a blank
// project of a PostgreSQL-only shop, then used from ESM (`import`) and from CommonJS
// (`require`) against a real server. The build comes first (`pnpm test` runs it).

const root = fileURLToPath(new URL('../../../', import.meta.url))
const PACKED = [
  'core',
  'routing',
  'cdc',
  'failover',
  'persistence',
  'replicator',
  'store-etcd',
  'dialect-postgres',
  'dialect-mysql',
  'kysely',
  'drizzle',
]
const { postgres, mariadb } = testBackends()

/** A replicated write and read through the installed packages; prints what it read. */
const program = (load: string) => `${load}
async function main() {
  const rm = new ReplicationManager()
  await rm.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: process.env.DATABASE_URL })
  const writer = rm.resolveWriteService('shop').dialect
  await writer.ensureCollection({ name: 'orders', columns: [{ name: 'id', type: 'string' }, { name: 'total', type: 'integer' }], primaryKey: ['id'] })
  await writer.upsertMany('orders', [{ id: process.env.ORDER_ID, total: 42 }])
  const read = await rm.resolveReadService('shop').dialect.find('orders', { id: process.env.ORDER_ID })
  const dialects = [createDialect({ dialect: 'postgres', uri: 'postgres://u:p@h/db' }).name, createDialect({ dialect: 'mariadb', uri: 'mysql://u:p@h/db' }).name]
  await rm.disconnectAll()
  console.log(JSON.stringify({ read, dialects }))
}
main().catch((error) => { console.error(error); process.exit(1) })
`

describe.skipIf(!postgres.serverUrl)('packages installed from their tarballs', () => {
  let project = ''
  let database: { uri: string; cleanup(): Promise<void> } | undefined

  beforeAll(async () => {
    const unbuilt = PACKED.filter((name) => !existsSync(join(root, 'packages', name, 'dist', 'index.cjs')))
    if (unbuilt.length) throw new Error(`not built: ${unbuilt.join(', ')}; run pnpm build (pnpm test builds first)`)
    project = mkdtempSync(join(tmpdir(), 'replicator-blank-'))
    const tarballs = join(project, 'tarballs')
    for (const name of PACKED)
      execFileSync('pnpm', ['pack', '--pack-destination', tarballs], {
        cwd: join(root, 'packages', name),
        stdio: 'pipe',
      })
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'blank-shop', private: true }))
    const files = readdirSync(tarballs).map((file) => join(tarballs, file))
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...files], {
      cwd: project,
      stdio: 'pipe',
      timeout: 240_000,
    })
    database = await postgres.freshDatabase()
  }, 300_000)

  afterAll(async () => {
    await database?.cleanup()
    if (project) rmSync(project, { recursive: true, force: true })
  })

  const run = (file: string, orderId: string) =>
    JSON.parse(
      execFileSync(process.execPath, [file], {
        cwd: project,
        env: { ...process.env, DATABASE_URL: database!.uri, ORDER_ID: orderId },
        encoding: 'utf8',
      }),
    ) as { read: Array<{ id: string; total: number }>; dialects: string[] }

  it('a PostgreSQL-only install brings the pg driver (a peer) and builds nothing native: no better-sqlite3, no zongji', () => {
    expect(existsSync(join(project, 'node_modules', 'pg', 'package.json'))).toBe(true)
    expect(existsSync(join(project, 'node_modules', 'better-sqlite3'))).toBe(false)
    expect(existsSync(join(project, 'node_modules', '@vlasky', 'zongji'))).toBe(false)
    expect(existsSync(join(project, 'node_modules', '@mostajs', 'replicator', 'LICENSE'))).toBe(true)
  })

  it('ESM: import, then a routed write and read on a real server', () => {
    writeFileSync(
      join(project, 'app.mjs'),
      program(
        "import '@mostajs/replicator-dialect-postgres'\nimport '@mostajs/replicator-dialect-mysql'\nimport { createDialect } from '@mostajs/replicator-core'\nimport { ReplicationManager } from '@mostajs/replicator'",
      ),
    )
    expect(run('app.mjs', 'esm-1')).toEqual({ read: [{ id: 'esm-1', total: 42 }], dialects: ['postgres', 'mariadb'] })
  })

  it('CommonJS: require, then a routed write and read on a real server', () => {
    writeFileSync(
      join(project, 'app.cjs'),
      program(
        "require('@mostajs/replicator-dialect-postgres')\nrequire('@mostajs/replicator-dialect-mysql')\nconst { createDialect } = require('@mostajs/replicator-core')\nconst { ReplicationManager } = require('@mostajs/replicator')",
      ),
    )
    expect(run('app.cjs', 'cjs-1')).toEqual({ read: [{ id: 'cjs-1', total: 42 }], dialects: ['postgres', 'mariadb'] })
    const kysely = execFileSync(
      process.execPath,
      ['-e', "console.log(typeof require('@mostajs/replicator-kysely').ReplicatedDialect)"],
      { cwd: project, encoding: 'utf8' },
    )
    expect(kysely.trim()).toBe('function') // kysely itself is ESM-only: required through Node's require(esm)
  })

  it('the subpaths (core/sql, replicator/service, replicator/cli) load from both module systems over one copy of the classes', () => {
    const probe = (load: string) =>
      `${load}
const dialect = createDialect({ dialect: 'postgres', uri: 'postgres://u:p@h/db' })
console.log(JSON.stringify({
  sqlDialect: dialect instanceof SqlDialect,
  service: [typeof startStatusServer, typeof createReplicatorMetrics, typeof runReplicatorService],
  cli: typeof runCli,
  facadeNarrow: ['startStatusServer', 'runCli', 'createReplicatorMetrics'].filter((name) => name in facade),
  coreNarrow: ['SqlDialect', 'compileFilter'].filter((name) => name in core),
}))`
    writeFileSync(
      join(project, 'subpaths.mjs'),
      probe(`import '@mostajs/replicator-dialect-postgres'
import * as core from '@mostajs/replicator-core'
import { createDialect } from '@mostajs/replicator-core'
import { SqlDialect } from '@mostajs/replicator-core/sql'
import * as facade from '@mostajs/replicator'
import { createReplicatorMetrics, runReplicatorService, startStatusServer } from '@mostajs/replicator/service'
import { runCli } from '@mostajs/replicator/cli'`),
    )
    writeFileSync(
      join(project, 'subpaths.cjs'),
      probe(`require('@mostajs/replicator-dialect-postgres')
const core = require('@mostajs/replicator-core')
const { createDialect } = core
const { SqlDialect } = require('@mostajs/replicator-core/sql')
const facade = require('@mostajs/replicator')
const { createReplicatorMetrics, runReplicatorService, startStatusServer } = require('@mostajs/replicator/service')
const { runCli } = require('@mostajs/replicator/cli')`),
    )
    for (const file of ['subpaths.mjs', 'subpaths.cjs'])
      expect(JSON.parse(execFileSync(process.execPath, [file], { cwd: project, encoding: 'utf8' }))).toEqual({
        sqlDialect: true,
        service: ['function', 'function', 'function'],
        cli: 'function',
        facadeNarrow: [],
        coreNarrow: [],
      })
  })

  it('the types resolve for both module systems (tsc, node16 resolution)', () => {
    writeFileSync(
      join(project, 'types.mts'),
      "import { ReplicationManager } from '@mostajs/replicator'\nimport { type Dialect } from '@mostajs/replicator-core'\nimport { SqlDialect } from '@mostajs/replicator-core/sql'\nimport { type StatusServer } from '@mostajs/replicator/service'\nexport const rm: ReplicationManager = new ReplicationManager()\nexport type D = Dialect\nexport type S = StatusServer | SqlDialect\n",
    )
    writeFileSync(
      join(project, 'types.cts'),
      "import { ReplicationManager } from '@mostajs/replicator'\nimport type { Dialect } from '@mostajs/replicator-core'\nimport type { SqlDialect } from '@mostajs/replicator-core/sql'\nimport type { StatusServer } from '@mostajs/replicator/service'\nexport const rm: ReplicationManager = new ReplicationManager()\nexport type D = Dialect\nexport type S = StatusServer | SqlDialect\n",
    )
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    const args = ['--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--skipLibCheck']
    execFileSync(process.execPath, [tsc, ...args, 'types.mts', 'types.cts'], { cwd: project, stdio: 'pipe' })
  })

  it.skipIf(!mariadb.serverUrl)(
    'change capture on MariaDB without the optional zongji fails with NOT_SUPPORTED naming the package to install',
    async () => {
      const source = await mariadb.freshDatabase()
      try {
        writeFileSync(
          join(project, 'capture.mjs'),
          `import '@mostajs/replicator-dialect-mysql'
import { connectDialect } from '@mostajs/replicator-core'
const db = await connectDialect({ dialect: 'mariadb', uri: process.env.SOURCE_URL })
await db.ensureCollection({ name: 'items', columns: [{ name: 'id', type: 'integer' }], primaryKey: ['id'] })
await db.capture.setup({ name: 'probe', collections: ['items'] })
const outcome = await db.capture.read('probe', { after: null, maxEvents: 10 }).then(() => ({ code: 'none' }), (error) => ({ code: error.code, message: error.message }))
await db.capture.drop('probe')
await db.close()
console.log(JSON.stringify(outcome))`,
        )
        const printed = execFileSync(process.execPath, ['capture.mjs'], {
          cwd: project,
          env: { ...process.env, SOURCE_URL: source.uri },
          encoding: 'utf8',
        })
        const outcome = JSON.parse(printed) as { code: string; message: string }
        expect(outcome.code).toBe('NOT_SUPPORTED')
        expect(outcome.message).toMatch(/npm install @vlasky\/zongji/)
      } finally {
        await source.cleanup()
      }
    },
  )
})

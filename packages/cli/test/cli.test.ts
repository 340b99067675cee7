import '@mostajs/replicator-dialect-sqlite'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, type Dialect } from '@mostajs/replicator'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'replicator-cli-'))
const tree = join(dir, 'tree.json')

/** Runs the CLI as a user would (a separate node process). */
function run(
  args: string[],
  options: { env?: Record<string, string>; untilOutput?: RegExp; signal?: NodeJS.Signals } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', cli, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let signaled = false
    child.stdout.on('data', (chunk) => {
      stdout += chunk
      if (!signaled && options.untilOutput?.test(stdout)) {
        signaled = true
        child.kill(options.signal ?? 'SIGTERM')
      }
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

describe('mostajs-replicator CLI (spawned)', () => {
  let app: Dialect
  let copy: Dialect
  const appUri = `sqlite:${join(dir, 'app.db')}`
  const copyUri = `sqlite:${join(dir, 'copy.db')}`

  beforeAll(async () => {
    app = await connectDialect({ dialect: 'sqlite', uri: appUri })
    copy = await connectDialect({ dialect: 'sqlite', uri: copyUri })
    await app.ensureCollection({
      name: 'users',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'email', type: 'string' },
      ],
      primaryKey: ['id'],
    })
    await app.upsertMany('users', [
      { id: 1, email: 'a@example.com' },
      { id: 2, email: 'b@example.com' },
    ])
    writeFileSync(
      tree,
      JSON.stringify(
        {
          version: 1,
          replicas: {
            app: [{ name: 'main', role: 'master', dialect: 'sqlite', uri: '${CLI_TEST_APP_URI}' }],
            copy: [{ name: 'main', role: 'master', dialect: 'sqlite', uri: copyUri }],
          },
          routing: { app: 'least-lag' },
          rules: [{ name: 'users-copy', source: 'app', target: 'copy', mode: 'cdc', collections: ['users'] }],
        },
        null,
        2,
      ),
    )
  })

  afterAll(async () => {
    await app.close()
    await copy.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('validate: 0 for a good tree, 1 with JSON paths for a bad one, 1 for a missing file, 2 for bad usage', async () => {
    const good = await run(['validate', tree])
    expect(good.code).toBe(0)
    expect(good.stdout).toContain('is valid: 2 replicas in 2 projects, 1 rules')
    const badTree = join(dir, 'bad.json')
    writeFileSync(
      badTree,
      JSON.stringify({ version: 1, replicas: { app: [{ name: 'm', role: 'boss', dialect: 'sqlite', uri: '' }] } }),
    )
    const bad = await run(['validate', badTree, '--json'])
    expect(bad.code).toBe(1)
    const report = JSON.parse(bad.stdout) as { valid: boolean; problems: Array<{ path: string }> }
    expect(report.valid).toBe(false)
    expect(report.problems.map((problem) => problem.path)).toEqual(
      expect.arrayContaining(['$.replicas.app[0].role', '$.replicas.app[0].uri']),
    )
    const missing = await run(['validate', join(dir, 'nope.json')])
    expect(missing.code).toBe(1)
    expect((await run(['frobnicate'])).code).toBe(2)
  })

  it('validate: a malformed rule is refused with the JSON path of each problem', async () => {
    const badRules = join(dir, 'bad-rules.json')
    const rule = { name: 'r', source: 'app', target: 'copy', collections: ['users'] }
    writeFileSync(
      badRules,
      JSON.stringify({
        version: 1,
        replicas: { app: [{ name: 'm', role: 'master', dialect: 'sqlite', uri: appUri }] },
        rules: [
          { ...rule, mode: 'cdcx' },
          { ...rule, name: 'two', mode: 'cdc', batchSize: 0, conflictResolution: 'newest' },
          { ...rule, name: 'both', mode: 'bidirectional' },
          { ...rule, name: 'typo', mode: 'cdc', colections: ['users'] },
        ],
      }),
    )
    const bad = await run(['validate', badRules, '--json'])
    expect(bad.code).toBe(1)
    const report = JSON.parse(bad.stdout) as { problems: Array<{ path: string; message: string }> }
    expect(report.problems.map((problem) => problem.path)).toEqual(
      expect.arrayContaining([
        '$.rules[0].mode',
        '$.rules[1].batchSize',
        '$.rules[1].conflictResolution',
        '$.rules[2].conflictResolution',
        '$.rules[3]',
      ]),
    )
    expect(report.problems.find((problem) => problem.path === '$.rules[0].mode')?.message).toContain("'cdc'")
  })

  it('migrate-tree: rewrites a @mostajs/replicator 0.2 tree in version 2, keeps the original; validate names the form', async () => {
    const original = {
      replicas: { app: { main: { role: 'master', dialect: 'sqlite', uri: appUri } } },
      rules: { 'users-copy': { source: 'app', target: 'copy', mode: 'cdc', collections: ['users'], enabled: true } },
      routing: { app: 'least-lag' },
    }
    const path = join(dir, 'original.json')
    const text = JSON.stringify(original, null, 2)
    writeFileSync(path, text)
    const validated = await run(['validate', path])
    expect(validated.code).toBe(0)
    expect(validated.stdout).toContain('is valid: 1 replicas in 1 projects, 1 rules (the @mostajs/replicator 0.2 form;')
    expect(validated.stdout).toContain(`mostajs-replicator migrate-tree ${path}`)

    const migrated = await run(['migrate-tree', path, '--json'])
    expect(migrated.code, migrated.stderr).toBe(0)
    expect(JSON.parse(migrated.stdout)).toEqual({
      tree: path,
      from: '0.2',
      to: 2,
      replicas: 1,
      rules: 1,
      backup: `${path}.v0.2.bak`,
    })
    expect(readFileSync(`${path}.v0.2.bak`, 'utf8')).toBe(text)
    const written = JSON.parse(readFileSync(path, 'utf8'))
    expect(written).toEqual({ version: 2, ...original, epochs: {} })
    const again = await run(['migrate-tree', path])
    expect(again.code).toBe(0)
    expect(again.stdout).toBe(`${path} is already version 2; nothing to do\n`)

    // a masked password: refused with its path, the file left as it was
    const masked = join(dir, 'masked.json')
    const maskedText = JSON.stringify({
      replicas: { app: { main: { role: 'master', dialect: 'postgres', uri: 'postgres://app:***@db:5432/app' } } },
    })
    writeFileSync(masked, maskedText)
    const refused = await run(['migrate-tree', masked])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('CONFIG_INVALID')
    expect(refused.stderr).toContain('$.replicas.app.main.uri: holds a masked password')
    expect(readFileSync(masked, 'utf8')).toBe(maskedText)
    expect((await run(['migrate-tree'])).code).toBe(2)
  })

  it('sync and status: the rule copies the rows; status shows replicas with masked URIs and rule counts', async () => {
    const env = { CLI_TEST_APP_URI: appUri }
    const synced = await run(['sync', 'users-copy', '--tree', tree, '--json'], { env })
    expect(synced.stderr).toMatch(/^users\s+\[#{30}\] 100%  2\/2 rows$/m) // the snapshot progress bar
    expect(synced.code).toBe(0)
    expect(JSON.parse(synced.stdout)).toMatchObject({ ruleName: 'users-copy', recordsSynced: 2 })
    expect(await copy.find('users', {}, { sort: { id: 1 } })).toEqual([
      { id: 1, email: 'a@example.com' },
      { id: 2, email: 'b@example.com' },
    ])
    const quiet = await run(['sync', 'users-copy', '--tree', tree, '--no-progress'], { env })
    expect(quiet.stderr).toBe('')
    expect(quiet.stdout).toMatch(/^users-copy: \d+ records/)
    const status = await run(['status', '--tree', tree, '--json', '--wait', '300'], { env })
    expect(status.code).toBe(0)
    const parsed = JSON.parse(status.stdout) as {
      replicas: Array<{ project: string; role: string; healthy: boolean }>
      rules: Array<{ name: string }>
    }
    expect(parsed.replicas.map((replica) => [replica.project, replica.role, replica.healthy])).toEqual([
      ['app', 'master', true],
      ['copy', 'master', true],
    ])
    expect(parsed.rules.map((rule) => rule.name)).toEqual(['users-copy'])
    const [progress] = (
      parsed.rules as unknown as Array<{ progress: { deadLetters: number; appliedAt: string | null } }>
    ).map((rule) => rule.progress)
    expect(progress).toMatchObject({ deadLetters: 0 }) // read from the target: this process never synced
    expect(progress!.appliedAt).not.toBeNull()
    const text = await run(['status', '--tree', tree, '--wait', '0'], { env })
    expect(text.stdout).toMatch(/project\s+replica\s+role/)
    expect(text.stdout).toMatch(/rule\s+mode\s+source\s+target\s+position\s+applied\s+dead letters/)
    const unknownRule = await run(['sync', 'nope', '--tree', tree], { env })
    expect(unknownRule.code).toBe(1)
    expect(unknownRule.stderr).toContain('CONFIG_INVALID')
    const missingEnv = await run(['status', '--tree', tree, '--wait', '0'])
    expect(missingEnv.code).toBe(1)
    expect(missingEnv.stderr).toContain('CLI_TEST_APP_URI')
  })

  it('scaffold: writes a thin service file that runs the service, refuses to overwrite without --force', async () => {
    // inside the repository, so the generated file resolves @mostajs/replicator like a project would
    const project = fileURLToPath(new URL('../../../.scaffold-test/', import.meta.url))
    rmSync(project, { recursive: true, force: true })
    try {
      const first = await run(['scaffold', '--dir', project])
      expect(first.code).toBe(0)
      const file = join(project, 'services', 'replicator.mjs')
      expect(readFileSync(file, 'utf8')).toContain('runReplicatorService')
      expect((await run(['scaffold', '--dir', project])).code).toBe(1)
      expect((await run(['scaffold', '--dir', project, '--force'])).code).toBe(0)
      const dry = await run(['scaffold', '--dir', project, '--path', 'other.mjs', '--dry-run'])
      expect(dry.stdout).toContain(
        "import { runReplicatorService, serviceOptionsFromEnv } from '@mostajs/replicator/service'",
      )
      // the generated file runs the service and stops cleanly
      const service = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', file], {
          cwd: project,
          env: { ...process.env, REPLICATOR_TREE: tree, CLI_TEST_APP_URI: appUri },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let stdout = ''
        let signaled = false
        child.stdout.on('data', (chunk) => {
          stdout += chunk
          if (!signaled && /running:/.test(stdout)) {
            signaled = true
            child.kill('SIGTERM')
          }
        })
        child.on('error', reject)
        child.on('close', (code) => resolve({ code, stdout }))
      })
      expect(service.stdout).toContain('stopped')
      expect(service.code).toBe(0)
    } finally {
      rmSync(project, { recursive: true, force: true })
    }
  })

  it('run: streams the rule continuously and exits cleanly on SIGTERM', async () => {
    await app.upsertMany('users', [{ id: 3, email: 'c@example.com' }])
    const service = await run(['run', '--tree', tree], {
      env: { CLI_TEST_APP_URI: appUri, REPLICATOR_INTERVAL_MS: '50' },
      untilOutput: /streaming rule users-copy[\s\S]*running:/,
    })
    expect(service.stdout).toContain('stopped')
    expect(service.code).toBe(0)
    expect(readFileSync(tree, 'utf8')).toContain('users-copy')
    expect((await copy.findOne('users', { id: 3 }))?.email).toBe('c@example.com')
  })
})

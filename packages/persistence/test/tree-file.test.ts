import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicatorError } from '@mostajs/replicator-core'
import {
  loadTreeFile,
  parseTree,
  readTreeFile,
  resolveEnvReferences,
  writeTreeFile,
  type ReplicatorTree,
} from '../src/index.js'

const dir = mkdtempSync(join(tmpdir(), 'replicator-tree-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const tree: ReplicatorTree = {
  replicas: {
    shop: [
      { name: 'primary', role: 'master', dialect: 'postgres', uri: 'postgres://app:${DB_PASSWORD}@db:5432/shop' },
      {
        name: 'r1',
        role: 'slave',
        dialect: 'postgres',
        uri: '${REPLICA_URL}',
        lagTolerance: 500,
        weight: 2,
        replication: 'native',
      },
    ],
  },
  routing: { shop: 'least-lag' },
  rules: [{ name: 'users-to-analytics', source: 'shop', target: 'analytics', mode: 'cdc', collections: ['users'] }],
  epochs: { shop: 2 },
}

function problemsOf(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn()
  } catch (error) {
    expect(ReplicatorError.isInstance(error) && error.code).toBe('CONFIG_INVALID')
    return (error as ReplicatorError).details.problems as Array<{ path: string; message: string }>
  }
  throw new Error('expected CONFIG_INVALID')
}

describe('tree file', () => {
  it('round-trips through an atomic save, keeping the previous version as .bak with mode 0600', async () => {
    const path = join(dir, 'tree.json')
    await writeTreeFile(path, tree)
    expect(await readTreeFile(path)).toEqual(tree)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    const second = { ...tree, routing: { shop: 'round-robin' as const } }
    await writeTreeFile(path, second)
    expect((await readTreeFile(path)).routing.shop).toBe('round-robin')
    expect(JSON.parse(readFileSync(`${path}.bak`, 'utf8')).routing.shop).toBe('least-lag')
  })

  it('lists every problem of a malformed tree with its JSON path', () => {
    const problems = problemsOf(() =>
      parseTree({
        version: 1,
        replicas: {
          shop: [
            { name: 'a', role: 'boss', dialect: 'postgres', uri: '' },
            { name: 'b', role: 'slave', dialect: 'sqlite', uri: 'x.db', lagTolernce: 5 },
          ],
        },
        routing: { shop: 'fastest' },
      }),
    )
    const paths = problems.map((problem) => problem.path)
    expect(paths).toEqual(
      expect.arrayContaining([
        '$.replicas.shop[0].role',
        '$.replicas.shop[0].uri',
        '$.replicas.shop[1]',
        '$.routing.shop',
      ]),
    )
  })

  it('refuses duplicate names and two masters', () => {
    const problems = problemsOf(() =>
      parseTree({
        version: 1,
        replicas: {
          shop: [
            { name: 'a', role: 'master', dialect: 'postgres', uri: 'postgres://h/d' },
            { name: 'a', role: 'master', dialect: 'postgres', uri: 'postgres://h/e' },
          ],
        },
      }),
    )
    expect(problems.map((problem) => problem.path)).toEqual(['$.replicas.shop[1].name', '$.replicas.shop'])
  })

  it('refuses a missing file, bad JSON and a wrong version, and leaves the file untouched', async () => {
    await expect(readTreeFile(join(dir, 'absent.json'))).rejects.toMatchObject({ code: 'CONFIG_INVALID' })
    const bad = join(dir, 'bad.json')
    writeFileSync(bad, '{ "version": 1, "replicas": ')
    await expect(readTreeFile(bad)).rejects.toThrow(/not valid JSON/)
    expect(readFileSync(bad, 'utf8')).toBe('{ "version": 1, "replicas": ')
    expect(problemsOf(() => parseTree({ version: 3, replicas: {} }))[0]!.path).toBe('$.version')
    await expect(
      writeTreeFile(join(dir, 'never.json'), { version: 1, replicas: { p: [{ name: '' }] } } as never),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID' })
    expect(existsSync(join(dir, 'never.json'))).toBe(false)
  })

  it('resolves ${ENV} references, also inside a URI, and names a missing one', () => {
    expect(resolveEnvReferences('postgres://app:${PW}@${HOST}:5432/db', '$.x', { PW: 's3cret', HOST: 'db1' })).toBe(
      'postgres://app:s3cret@db1:5432/db',
    )
    expect(() => resolveEnvReferences('${MISSING_ONE}', '$.replicas.shop[1].uri', {})).toThrow(
      /\$\.replicas\.shop\[1\]\.uri refers to \$\{MISSING_ONE\}/,
    )
  })

  // The file the original @mostajs/replicator 0.2 `saveToFile` wrote: keyed by name, no version.
  const original = {
    replicas: {
      shop: {
        primary: {
          role: 'master',
          dialect: 'postgres',
          uri: 'postgres://app:${DB_PASSWORD}@db:5432/shop',
          pool: { max: 5 },
        },
        r1: { role: 'slave', dialect: 'postgres', uri: '${REPLICA_URL}' },
      },
    },
    rules: {
      'users-to-analytics': {
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

  it('reads an original 0.2 tree: replicas and rules keyed by name, no version', () => {
    expect(parseTree(original)).toEqual({
      replicas: {
        shop: [
          {
            name: 'primary',
            role: 'master',
            dialect: 'postgres',
            uri: 'postgres://app:${DB_PASSWORD}@db:5432/shop',
            pool: { max: 5 },
          },
          { name: 'r1', role: 'slave', dialect: 'postgres', uri: '${REPLICA_URL}' },
        ],
      },
      routing: { shop: 'least-lag' },
      rules: [
        {
          name: 'users-to-analytics',
          source: 'shop',
          target: 'analytics',
          mode: 'cdc',
          collections: ['users'],
          conflictResolution: 'source-wins',
          enabled: true,
        },
      ],
      epochs: {},
    })
  })

  it('refuses a masked password with its JSON path and says to use an ${ENV} reference', async () => {
    const masked = structuredClone(original)
    masked.replicas.shop.primary.uri = 'postgres://app:***@db:5432/shop'
    masked.replicas.shop.r1.uri = 'mysql://db:3306/shop?user=app&password=****'
    const problems = problemsOf(() => parseTree(masked))
    expect(problems.map((problem) => problem.path)).toEqual(['$.replicas.shop.primary.uri', '$.replicas.shop.r1.uri'])
    expect(problems[0]!.message).toMatch(/masked password.*\$\{DB_PASSWORD\}/)
    const path = join(dir, 'masked.json')
    const text = JSON.stringify(masked)
    writeFileSync(path, text)
    await expect(readTreeFile(path)).rejects.toThrow(/\$\.replicas\.shop\.primary\.uri: holds a masked password/)
    expect(readFileSync(path, 'utf8')).toBe(text)
    // a password that merely contains stars, and a reference, are not masked
    expect(() =>
      parseTree({ replicas: { p: { m: { role: 'master', dialect: 'postgres', uri: 'postgres://app:a*b@h/d' } } } }),
    ).not.toThrow()
  })

  it('names the problems of a keyed file at their keys', () => {
    const problems = problemsOf(() =>
      parseTree({
        replicas: {
          shop: {
            primary: { name: 'main', role: 'master', dialect: 'postgres', uri: 'postgres://h/d' },
            r1: { role: 'slave', dialect: 'postgres', uri: 'postgres://h/e', lagTolernce: 5 },
            r2: 'postgres://h/f',
          },
          bad: [{ name: 'x', role: 'master', dialect: 'sqlite', uri: 'x.db' }],
        },
        rules: { 'has space': { source: 'shop', target: 'b', mode: 'cdc', collections: ['u'] } },
      }),
    )
    const paths = problems.map((problem) => problem.path)
    expect(paths.sort()).toEqual([
      '$.replicas.bad',
      '$.replicas.shop.primary.name',
      '$.replicas.shop.r1',
      '$.replicas.shop.r2',
      '$.rules["has space"]',
    ])
    expect(problems.find((problem) => problem.path === '$.replicas.bad')!.message).toMatch(
      /version 1 form: add "version": 1/,
    )
  })

  it('saves keyed by name (version 2), so a reader of the original format sees the same names, roles and rules', async () => {
    const path = join(dir, 'keyed.json')
    await writeTreeFile(path, tree)
    const saved = JSON.parse(readFileSync(path, 'utf8')) as Record<string, any>
    // what the original monitor's tree reader does: Object.entries over projects, replicas and rules
    const replicas = Object.entries(
      saved.replicas as Record<string, Record<string, { role: string; dialect: string }>>,
    ).flatMap(([project, byName]) => Object.entries(byName).map(([name, r]) => [project, name, r.role, r.dialect]))
    expect(replicas).toEqual([
      ['shop', 'primary', 'master', 'postgres'],
      ['shop', 'r1', 'slave', 'postgres'],
    ])
    expect(Object.keys(saved.rules)).toEqual(['users-to-analytics'])
    expect(saved.rules['users-to-analytics'].source).toBe('shop')
    expect(saved.routing).toEqual({ shop: 'least-lag' })
    expect(saved.version).toBe(2)
    expect(saved.epochs).toEqual({ shop: 2 })
    expect(saved.replicas.shop.r1).toMatchObject({ weight: 2, lagTolerance: 500, replication: 'native' })
    expect(await loadTreeFile(path)).toEqual({ tree, format: 2 })
  })

  it('replacing an older file keeps it beside as .v<form>.bak, once, and says so', async () => {
    const path = join(dir, 'migrating.json')
    const text = JSON.stringify(original)
    writeFileSync(path, text)
    expect((await loadTreeFile(path)).format).toBe('0.2')
    const first = await writeTreeFile(path, parseTree(original))
    expect(first).toEqual({ previousFormat: '0.2', formatBackup: `${path}.v0.2.bak` })
    expect(readFileSync(`${path}.v0.2.bak`, 'utf8')).toBe(text)
    expect((await loadTreeFile(path)).format).toBe(2)
    const second = await writeTreeFile(path, parseTree(original))
    expect(second).toEqual({ previousFormat: 2, formatBackup: null })
    expect(readFileSync(`${path}.v0.2.bak`, 'utf8')).toBe(text)
  })
})

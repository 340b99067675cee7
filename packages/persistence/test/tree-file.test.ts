import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicatorError } from '@mostajs/replicator-core'
import { parseTree, readTreeFile, resolveEnvReferences, writeTreeFile, type ReplicatorTree } from '../src/index.js'

const dir = mkdtempSync(join(tmpdir(), 'replicator-tree-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const tree: ReplicatorTree = {
  version: 1,
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
    expect(problemsOf(() => parseTree({ version: 2, replicas: {} }))[0]!.path).toBe('$.version')
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
})

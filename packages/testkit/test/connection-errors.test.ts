import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { createServer, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDialect, ReplicatorError } from '@mostajs/replicator-core'
import { freePort } from '@mostajs/replicator-testkit'
import { expectReplicatorError, testBackends } from '@mostajs/replicator-testkit/vitest'

const SECRET = 'sekret-Pa55-word'
const backends = testBackends()

/** Everything an error exposes that could end up in a log. */
function exposedText(error: ReplicatorError): string {
  return [
    error.message,
    String(error),
    error.stack ?? '',
    JSON.stringify(error.details),
    String((error.cause as Error)?.message ?? ''),
  ].join('\n')
}

async function expectConnectionFailure(
  dialect: string,
  uri: string,
  options: { connectTimeoutMs?: number; withinMs: number; maskedUri?: string },
) {
  const db = createDialect({ dialect, uri, connectTimeoutMs: options.connectTimeoutMs })
  const started = Date.now()
  const error = await expectReplicatorError(db.connect(), 'CONNECTION_FAILED')
  expect(Date.now() - started).toBeLessThan(options.withinMs)
  expect(exposedText(error)).not.toContain(SECRET)
  expect(error.details.dialect).toBe(dialect)
  if (options.maskedUri) {
    expect(error.message).toContain(options.maskedUri)
    expect(error.details.uri).toBe(options.maskedUri)
    expect(db.maskedUri).toBe(options.maskedUri)
  }
  await db.close() // closing a dialect that never connected is harmless
  return error
}

describe('connection failures are bounded, clear and never show a password', () => {
  let silent: Server
  let silentPort = 0
  const sockets: Socket[] = []

  beforeAll(async () => {
    // A server that accepts connections and never answers: the client must give up on its own.
    silent = createServer((socket) => {
      sockets.push(socket)
    })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    silentPort = (silent.address() as { port: number }).port
  })

  afterAll(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => silent.close(resolve))
  })

  for (const dialect of ['postgres', 'mariadb'] as const) {
    const scheme = dialect === 'postgres' ? 'postgres' : 'mariadb'
    it(`${dialect}: nothing listening → CONNECTION_FAILED with the masked URI`, async () => {
      const port = await freePort()
      await expectConnectionFailure(dialect, `${scheme}://app:${SECRET}@127.0.0.1:${port}/main`, {
        withinMs: 6000,
        maskedUri: `${scheme}://app:****@127.0.0.1:${port}/main`,
      })
    })

    it(`${dialect}: a server that never answers → CONNECTION_FAILED within the connect timeout`, async () => {
      const error = await expectConnectionFailure(dialect, `${scheme}://app:${SECRET}@127.0.0.1:${silentPort}/main`, {
        connectTimeoutMs: 800,
        withinMs: 4000,
      })
      expect(error.message).toMatch(/timeout|timed out|ETIMEDOUT|within/i)
    })

    it(`${dialect}: a malformed URI → CONNECTION_FAILED`, async () => {
      await expectConnectionFailure(dialect, `${scheme}://app:${SECRET}@[::1:5432/main`, { withinMs: 2000 })
      const wrongScheme = await expectConnectionFailure(dialect, `http://app:${SECRET}@127.0.0.1:1/main`, {
        withinMs: 2000,
      })
      expect(wrongScheme.message).toContain('URI')
    })
  }

  it.skipIf(!backends.postgres.serverUrl)(
    `postgres: a wrong password → CONNECTION_FAILED without the password${backends.postgres.serverUrl ? '' : ` (skipped: ${backends.postgres.skipReason})`}`,
    async () => {
      const url = new URL(backends.postgres.serverUrl!)
      url.password = SECRET
      const error = await expectConnectionFailure('postgres', url.toString(), { withinMs: 6000 })
      expect(error.message).toMatch(/password authentication failed/)
    },
  )

  it.skipIf(!backends.mariadb.serverUrl)(
    `mariadb: a wrong password and a missing database → CONNECTION_FAILED${backends.mariadb.serverUrl ? '' : ` (skipped: ${backends.mariadb.skipReason})`}`,
    async () => {
      const url = new URL(backends.mariadb.serverUrl!)
      url.password = SECRET
      const denied = await expectConnectionFailure('mariadb', url.toString(), { withinMs: 6000 })
      expect(denied.message).toMatch(/Access denied/)
      const missing = new URL(backends.mariadb.serverUrl!)
      missing.pathname = '/no_such_database'
      const error = await expectConnectionFailure('mysql', missing.toString(), { withinMs: 6000 })
      expect(error.message).toMatch(/Unknown database/)
      const noDatabase = new URL(backends.mariadb.serverUrl!)
      noDatabase.pathname = '/'
      expect((await expectConnectionFailure('mysql', noDatabase.toString(), { withinMs: 2000 })).message).toMatch(
        /names no database/,
      )
    },
  )

  it('sqlite: a file in a directory that does not exist → CONNECTION_FAILED', async () => {
    const error = await expectConnectionFailure('sqlite', '/nonexistent-replicator-dir/sub/app.db', { withinMs: 2000 })
    expect(error.message).toContain('/nonexistent-replicator-dir/sub/app.db')
  })

  it('an operation before connect() → NOT_CONNECTED', async () => {
    const db = createDialect({ dialect: 'sqlite', uri: ':memory:' })
    await expectReplicatorError(db.find('anything'), 'NOT_CONNECTED')
  })

  it('an unknown dialect → UNKNOWN_DIALECT naming the registered ones and the package to install', () => {
    let caught: unknown
    try {
      createDialect({ dialect: 'oracle', uri: 'oracle://x' })
    } catch (error) {
      caught = error
    }
    expect(ReplicatorError.isInstance(caught)).toBe(true)
    const error = caught as ReplicatorError
    expect(error.code).toBe('UNKNOWN_DIALECT')
    expect(error.message).toContain('"oracle"')
    for (const name of ['postgres', 'postgresql', 'mysql', 'mariadb', 'sqlite']) expect(error.message).toContain(name)
  })

  it('an over-long PostgreSQL identifier is refused instead of being truncated', async () => {
    const db = createDialect({ dialect: 'postgres', uri: 'postgres://127.0.0.1:1/x' })
    await expectReplicatorError(
      db.ensureCollection({ name: 'n'.repeat(64), columns: [{ name: 'id', type: 'integer' }], primaryKey: ['id'] }),
      'CONFIG_INVALID',
    )
  })
})

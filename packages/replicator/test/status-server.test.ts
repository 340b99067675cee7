import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-sqlite'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, ReplicationManager, type Dialect } from '@mostajs/replicator'
import { startStatusServer, type StatusServer } from '@mostajs/replicator/service'
import { sqliteFile, startPostgres, type RunningPostgres } from '@mostajs/replicator-testkit'
import { expectReplicatorError, privateServer, waitFor } from '@mostajs/replicator-testkit/vitest'

const { available, skipNote } = privateServer('postgres')

async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; type: string }> {
  const response = await fetch(url, { headers })
  return { status: response.status, body: await response.text(), type: response.headers.get('content-type') ?? '' }
}

/** Value of one sample of a parsed metric family, found by its labels. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const family = parsePrometheusTextFormat(text).find((candidate) => candidate.name === name)
  const found = family?.metrics.find((metric) =>
    Object.entries(labels).every(([key, value]) => metric.labels?.[key] === value),
  )
  return found?.value === undefined ? undefined : Number(found.value)
}

describe.skipIf(!available)(
  `status endpoint: /health, /metrics, /api/* on a PostgreSQL master, a managed SQLite slave and a CDC rule${skipNote}`,
  () => {
    let server: RunningPostgres
    let masterUri = ''
    let master: Dialect
    let status: StatusServer
    const manager = new ReplicationManager(null, {
      heartbeatIntervalMs: 100,
      healthCheckIntervalMs: 200,
      failureThreshold: 1,
      connectTimeoutMs: 2000,
    })
    manager.on('error', () => undefined) // the outage below is reported through /health
    const files = [sqliteFile('status-slave.db'), sqliteFile('status-analytics.db')]

    beforeAll(async () => {
      server = await startPostgres()
      masterUri = await server.createDatabase('shop')
      master = await connectDialect({ dialect: 'postgres', uri: masterUri })
      await master.ensureCollection({
        name: 'orders',
        columns: [
          { name: 'id', type: 'integer' },
          { name: 'total', type: 'decimal' },
        ],
        primaryKey: ['id'],
      })
      await manager.addReplica('shop', { name: 'primary', role: 'master', dialect: 'postgres', uri: masterUri })
      await manager.addReplica('shop', {
        name: 'local',
        role: 'slave',
        dialect: 'sqlite',
        uri: files[0]!.uri,
        replication: 'managed',
        lagTolerance: 2000,
      })
      await manager.addReplica('analytics', { name: 'main', role: 'master', dialect: 'sqlite', uri: files[1]!.uri })
      await manager.addReplicationRule({
        name: 'orders-to-analytics',
        source: 'shop',
        target: 'analytics',
        mode: 'cdc',
        collections: ['orders'],
      })
      await manager.startRule('orders-to-analytics', { intervalMs: 50 })
      await waitFor(
        () => manager.getStreamState('orders-to-analytics')?.lastSuccessAt != null,
        15_000,
        'first sync (empty snapshot)',
      )
      status = await startStatusServer(manager, { port: 0 })
    })

    afterAll(async () => {
      await status?.close()
      await manager.disconnectAll()
      await master?.close()
      await server?.stop()
      for (const file of files) file.cleanup()
    })

    it('reports health, replicas, rules, routing and Prometheus metrics that a parser reads', async () => {
      await master.upsertMany(
        'orders',
        Array.from({ length: 250 }, (_, index) => ({ id: index + 1, total: `${index}.50` })),
      )
      await master.deleteMany('orders', [1, 2, 3])
      await waitFor(() => manager.getSyncStats('orders-to-analytics').deleted === 3, 15_000, 'rule applied the deletes')
      await waitFor(
        () => manager.getReplicaStatus('shop').find((replica) => replica.name === 'local')!.status === 'healthy',
        15_000,
        'managed slave healthy',
      )
      for (let read = 0; read < 20; read++) manager.resolveReadService('shop')

      const health = await get(`${status.url}/health`)
      expect(health.status).toBe(200)
      expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', reasons: [] })

      const replicas = JSON.parse((await get(`${status.url}/api/replicas`)).body) as Array<Record<string, unknown>>
      expect(
        replicas.map((replica) => [replica.project, replica.name, replica.role, replica.dialect, replica.state]),
      ).toEqual([
        ['shop', 'primary', 'master', 'postgres', 'up'],
        ['shop', 'local', 'slave', 'sqlite', 'up'],
        ['analytics', 'main', 'master', 'sqlite', 'up'],
      ])
      expect(typeof replicas[1]!.lag).toBe('number')
      expect(JSON.stringify(replicas)).not.toContain('password')

      const [rule] = JSON.parse((await get(`${status.url}/api/rules`)).body) as Array<{
        name: string
        streaming: boolean
        stats: Record<string, number>
      }>
      expect(rule).toMatchObject({ name: 'orders-to-analytics', streaming: true })
      expect(rule!.stats.created).toBe(250)
      expect(rule!.stats.inserted).toBe(rule!.stats.created)
      expect(rule!.stats.deleted).toBe(3)
      expect(rule!.stats.failed).toBe(0)

      const [routing] = JSON.parse((await get(`${status.url}/api/routing`)).body) as Array<{
        project: string
        strategy: string
        eligible: string[]
        readsRouted: Record<string, number>
      }>
      expect(routing).toMatchObject({ project: 'shop', strategy: 'round-robin', eligible: ['local'] })
      expect(routing!.readsRouted.local! + routing!.readsRouted.primary!).toBeGreaterThanOrEqual(20)

      const metrics = await get(`${status.url}/metrics`)
      expect(metrics.status).toBe(200)
      expect(metrics.type).toContain('text/plain')
      const families = parsePrometheusTextFormat(metrics.body)
      expect(families.length).toBeGreaterThan(10)
      expect(
        sample(metrics.body, 'replicator_replica_lag_seconds', { project: 'shop', replica: 'local' }),
      ).toBeGreaterThanOrEqual(0)
      expect(sample(metrics.body, 'replicator_replica_healthy', { project: 'shop', replica: 'primary' })).toBe(1)
      expect(
        sample(metrics.body, 'replicator_rule_events_applied_total', { rule: 'orders-to-analytics', op: 'create' }),
      ).toBe(250)
      expect(
        sample(metrics.body, 'replicator_rule_events_applied_total', { rule: 'orders-to-analytics', op: 'delete' }),
      ).toBe(3)
      expect(sample(metrics.body, 'replicator_rule_dead_letters_total', { rule: 'orders-to-analytics' })).toBe(0)
      expect(
        sample(metrics.body, 'replicator_capture_retained_bytes', {
          capture: 'orders-to-analytics',
          source: 'shop/primary',
        }),
      ).toBeGreaterThanOrEqual(0)
      const latency = families.find((family) => family.name === 'replicator_apply_duration_seconds')
      expect(latency?.type).toBe('HISTOGRAM')
      expect(Number(latency!.metrics[0]?.buckets?.['+Inf'] ?? 0)).toBeGreaterThan(0) // this parser merges the label sets of a histogram
      const batches = /^replicator_apply_duration_seconds_count\{rule="orders-to-analytics"\} (\d+)$/m.exec(
        metrics.body,
      )
      expect(Number(batches?.[1])).toBeGreaterThan(0)
    })

    it('answers 404 for unknown paths and 405 for writes', async () => {
      expect((await get(`${status.url}/nope`)).status).toBe(404)
      expect((await fetch(`${status.url}/health`, { method: 'POST' })).status).toBe(405)
    })

    it('needs the bearer token when one is set, and refuses a non-loopback host without one', async () => {
      const guarded = await startStatusServer(manager, { port: 0, token: 's3cret-token' })
      try {
        expect((await get(`${guarded.url}/health`)).status).toBe(401)
        expect((await get(`${guarded.url}/metrics`, { authorization: 'Bearer wrong' })).status).toBe(401)
        expect((await get(`${guarded.url}/health`, { authorization: 'Bearer s3cret-token' })).status).toBe(200)
      } finally {
        await guarded.close()
      }
      expect(
        (await expectReplicatorError(startStatusServer(manager, { port: 0, host: '0.0.0.0' }), 'CONFIG_INVALID'))
          .message,
      ).toMatch(/without a token/)
      expect(
        (await expectReplicatorError(startStatusServer(manager, { port: status.port }), 'CONFIG_INVALID')).message,
      ).toMatch(/in use/)
    })

    it('/health answers 503 while the master is down, and 200 once it is back', async () => {
      await server.halt!()
      try {
        await waitFor(async () => (await get(`${status.url}/health`)).status === 503, 20_000, '/health 503')
        const report = JSON.parse((await get(`${status.url}/health`)).body) as { status: string; reasons: string[] }
        expect(report.status).toBe('down')
        expect(report.reasons.join('\n')).toMatch(/project shop: master primary is unhealthy/)
      } finally {
        await server.resume!()
      }
      await waitFor(async () => (await get(`${status.url}/health`)).status === 200, 30_000, '/health 200 again')
    })
  },
)

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { ReplicationManager } from '../replication-manager.js'

/** A Prometheus registry reading a manager's state at each scrape. */
export interface ReplicatorMetrics {
  registry: Registry
  /** Prometheus text exposition of every metric. */
  text(): Promise<string>
  /** Stops listening to the manager. */
  detach(): void
}

/** Options of {@link createReplicatorMetrics}. */
export interface ReplicatorMetricsOptions {
  /**
   * Register into this registry (the application's own, so one scrape gives both) instead of
   * a new one. `detach()` then removes the replicator's metrics from it.
   */
  registry?: Registry
  /** Node.js process metrics; default: on in a registry of its own, off in the application's (it has its own). */
  defaultMetrics?: boolean
}

/**
 * Metrics of a ReplicationManager: measured lag and health per replica, reads routed, events
 * applied per rule and operation, apply latency, errors, dead letters, rule lag, and what each
 * capture retains on its source (PostgreSQL slot WAL, SQLite changelog rows). Process metrics
 * (memory, CPU, event loop) come with them. Names start with `replicator_`.
 */
export function createReplicatorMetrics(
  manager: ReplicationManager,
  options: ReplicatorMetricsOptions = {},
): ReplicatorMetrics {
  const registry = options.registry ?? new Registry()
  const theirs = new Set(registry.getMetricsAsArray().map((metric) => metric.name))
  // Counters below report totals the manager keeps: each collect() resets, then adds the total.
  if (options.defaultMetrics ?? !options.registry) collectDefaultMetrics({ register: registry })
  const replicas = () => manager.listProjects().flatMap((project) => manager.getReplicaStatus(project))

  new Gauge({
    name: 'replicator_replica_lag_seconds',
    help: 'Measured replication lag (heartbeat) of each replica; absent until measured',
    registers: [registry],
    labelNames: ['project', 'replica', 'role', 'dialect'],
    collect() {
      this.reset()
      for (const r of replicas())
        if (r.lag !== null)
          this.set({ project: r.project, replica: r.name, role: r.role, dialect: r.dialect }, r.lag / 1000)
    },
  })
  new Gauge({
    name: 'replicator_replica_lag_tolerance_seconds',
    help: 'Largest lag at which a slave serves reads',
    registers: [registry],
    labelNames: ['project', 'replica'],
    collect() {
      this.reset()
      for (const r of replicas())
        if (r.role === 'slave') this.set({ project: r.project, replica: r.name }, r.lagTolerance / 1000)
    },
  })
  new Gauge({
    name: 'replicator_replica_healthy',
    help: '1 when the replica answers and is not fenced, else 0',
    registers: [registry],
    labelNames: ['project', 'replica', 'role', 'state'],
    collect() {
      this.reset()
      for (const r of replicas())
        this.set({ project: r.project, replica: r.name, role: r.role, state: r.status }, r.healthy ? 1 : 0)
    },
  })
  new Counter({
    name: 'replicator_replica_reads_routed_total',
    help: 'Reads resolveReadService sent to each replica',
    registers: [registry],
    labelNames: ['project', 'replica'],
    collect() {
      this.reset()
      for (const r of replicas()) this.inc({ project: r.project, replica: r.name }, r.readsRouted)
    },
  })

  new Counter({
    name: 'replicator_reads_master_fallback_total',
    help: 'Reads the master served because no slave could, by reason (slaves_lagging, session_not_applied, slaves_down, no_slave, strong_consistency, no_weight)',
    registers: [registry],
    labelNames: ['project', 'reason'],
    collect() {
      this.reset()
      for (const project of manager.listProjects())
        for (const [reason, count] of Object.entries(manager.getRoutingStatus(project).masterFallbacks))
          this.inc({ project, reason }, count ?? 0)
    },
  })

  const ruleStats = () =>
    manager.listRules().flatMap((rule) => {
      const stats = manager.getSyncStats(rule.name)
      return stats.reverse ? [stats, stats.reverse] : [stats]
    })
  new Counter({
    name: 'replicator_rule_events_applied_total',
    help: 'Changes applied to the target per rule and operation (snapshot rows as create)',
    registers: [registry],
    labelNames: ['rule', 'op'],
    collect() {
      this.reset()
      for (const stats of ruleStats()) {
        const snapshotRows = stats.details.reduce((sum, detail) => sum + detail.snapshotRows, 0)
        this.inc({ rule: stats.ruleName, op: 'create' }, stats.created + snapshotRows)
        this.inc({ rule: stats.ruleName, op: 'update' }, stats.updated)
        this.inc({ rule: stats.ruleName, op: 'delete' }, stats.deleted)
      }
    },
  })
  new Counter({
    name: 'replicator_rule_skipped_total',
    help: 'Changes the conflict resolution refused',
    registers: [registry],
    labelNames: ['rule'],
    collect() {
      this.reset()
      for (const stats of ruleStats()) this.inc({ rule: stats.ruleName }, stats.skipped)
    },
  })
  new Counter({
    name: 'replicator_rule_dead_letters_total',
    help: 'Rows the target rejected (kept in _replicator_dead_letters)',
    registers: [registry],
    labelNames: ['rule'],
    collect() {
      this.reset()
      for (const stats of ruleStats()) this.inc({ rule: stats.ruleName }, stats.deadLettered)
    },
  })
  new Counter({
    name: 'replicator_stream_failures_total',
    help: 'Failed streaming attempts (source or target unreachable…); retried with backoff',
    registers: [registry],
    labelNames: ['stream', 'kind'],
    collect() {
      this.reset()
      for (const stream of manager.listStreams())
        this.inc({ stream: stream.name, kind: stream.kind }, stream.totalFailures)
    },
  })
  new Gauge({
    name: 'replicator_stream_consecutive_failures',
    help: 'Failed attempts since the last success of each streaming loop',
    registers: [registry],
    labelNames: ['stream', 'kind'],
    collect() {
      this.reset()
      for (const stream of manager.listStreams())
        this.set({ stream: stream.name, kind: stream.kind }, stream.consecutiveFailures)
    },
  })
  new Gauge({
    name: 'replicator_rule_lag_seconds',
    help: 'Age of the newest change when the rule applied it (0 when nothing was pending)',
    registers: [registry],
    labelNames: ['rule'],
    collect() {
      this.reset()
      for (const stats of ruleStats()) this.set({ rule: stats.ruleName }, stats.lagMs / 1000)
    },
  })
  // Both capture gauges come from one round of queries per scrape (the first one's collect,
  // which runs first, fills the second).
  const pendingEvents = new Gauge({
    name: 'replicator_capture_pending_events',
    help: 'Captured changes not yet confirmed (SQLite changelog rows)',
    labelNames: ['capture', 'source'],
    registers: [],
  })
  const retentionExceeded = new Gauge({
    name: 'replicator_capture_retention_exceeded',
    help: 'Captures over maxRetainedWalBytes, or whose slot is at risk or lost (1), at the last retention check',
    labelNames: ['capture', 'source'],
    registers: [],
    collect() {
      this.reset()
      for (const warning of manager.getRetentionWarnings())
        this.set({ capture: warning.capture, source: warning.source }, 1)
    },
  })
  registry.registerMetric(retentionExceeded)
  new Gauge({
    name: 'replicator_capture_retained_bytes',
    help: 'Log bytes a capture keeps on its source (PostgreSQL replication slot WAL)',
    registers: [registry],
    labelNames: ['capture', 'source'],
    async collect() {
      this.reset()
      pendingEvents.reset()
      for (const backlog of await manager.captureBacklogs()) {
        const labels = { capture: backlog.capture, source: backlog.source }
        if (backlog.retainedBytes !== undefined) this.set(labels, backlog.retainedBytes)
        if (backlog.pendingEvents !== undefined) pendingEvents.set(labels, backlog.pendingEvents)
      }
    },
  })
  registry.registerMetric(pendingEvents)

  const applyDuration = new Histogram({
    name: 'replicator_apply_duration_seconds',
    help: 'Time to apply one target transaction of captured changes (rows + offset)',
    registers: [registry],
    labelNames: ['rule'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  })
  const applyLag = new Histogram({
    name: 'replicator_apply_lag_seconds',
    help: 'Source commit to target commit of the newest change of each applied transaction',
    registers: [registry],
    labelNames: ['rule'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  })
  const onBatch = (info: { rule: string; durationMs: number; lagMs: number }) => {
    applyDuration.observe({ rule: info.rule }, info.durationMs / 1000)
    applyLag.observe({ rule: info.rule }, info.lagMs / 1000)
  }
  manager.on('rule.batch', onBatch)

  // changes of master: made by this process, or followed (another process, or outside the manager)
  new Gauge({
    name: 'replicator_topology_epoch',
    help: 'Promotion epoch of each project (the fencing token every change of master increments)',
    registers: [registry],
    labelNames: ['project'],
    collect() {
      this.reset()
      for (const project of manager.listProjects()) this.set({ project }, manager.getEpoch(project))
    },
  })
  const promotions = new Counter({
    name: 'replicator_promotions_total',
    help: 'Promotions this process made (on request or automatic)',
    registers: [registry],
    labelNames: ['project'],
  })
  const failovers = new Counter({
    name: 'replicator_automatic_failovers_total',
    help: 'Promotions this process made on its own because the master was down',
    registers: [registry],
    labelNames: ['project'],
  })
  const followed = new Counter({
    name: 'replicator_master_changes_followed_total',
    help: 'Changes of master this process followed: made by another process (store) or outside the manager (outside)',
    registers: [registry],
    labelNames: ['project', 'by'],
  })
  const onPromoted = (result: { project: string }) => promotions.inc({ project: result.project })
  const onAutomatic = (result: { project: string }) => failovers.inc({ project: result.project })
  const onFollowed = (info: { project: string; outside?: boolean }) =>
    followed.inc({ project: info.project, by: info.outside ? 'outside' : 'store' })
  manager.on('replica.promoted', onPromoted)
  manager.on('failover.automatic', onAutomatic)
  manager.on('topology.followed', onFollowed)

  return {
    registry,
    text: () => registry.metrics(),
    detach: () => {
      if (options.registry)
        for (const metric of registry.getMetricsAsArray())
          if (!theirs.has(metric.name)) registry.removeSingleMetric(metric.name)
      manager.off('rule.batch', onBatch)
      manager.off('replica.promoted', onPromoted)
      manager.off('failover.automatic', onAutomatic)
      manager.off('topology.followed', onFollowed)
    },
  }
}

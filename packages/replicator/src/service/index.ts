// `@mostajs/replicator/service`: the manager run as a service — the status server (health,
// rule views, dashboard), Prometheus metrics, the service runner configured from the
// environment, and the scaffold of a service project.
export {
  DEFAULT_STATUS_PORT,
  healthOf,
  rulesView,
  startStatusServer,
  type HealthReport,
  type StatusServer,
  type StatusServerOptions,
} from './status-server.js'
export { createReplicatorMetrics, type ReplicatorMetrics, type ReplicatorMetricsOptions } from './metrics.js'
export {
  runReplicatorService,
  serviceOptionsFromEnv,
  type ReplicatorService,
  type ReplicatorServiceOptions,
} from './replicator-service.js'
export { scaffoldReplicatorService, SERVICE_TEMPLATE, type ScaffoldOptions } from './scaffold.js'

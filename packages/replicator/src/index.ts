export * from './replication-manager.js'
export { measureLag, type MasterHeartbeat } from './lag.js'
export { guardDialect } from './guarded-dialect.js'
export * from '@mostajs/replicator-core'
export {
  READ_ROUTING_STRATEGIES,
  ReadRouter,
  type ReadRoutingStrategy,
  type RoutingCandidate,
} from '@mostajs/replicator-routing'
export { openChangeStream, type OpenChangeStreamOptions } from '@mostajs/replicator-cdc'
export { readTreeFile, writeTreeFile, parseTree, type ReplicatorTree } from '@mostajs/replicator-persistence'
export { runReplicatorService, type ReplicatorService, type ReplicatorServiceOptions } from './replicator-service.js'
export { scaffoldReplicatorService, SERVICE_TEMPLATE, type ScaffoldOptions } from './scaffold.js'
export {
  startStatusServer,
  healthOf,
  rulesView,
  DEFAULT_STATUS_PORT,
  type StatusServer,
  type StatusServerOptions,
  type HealthReport,
} from './status-server.js'
export { createReplicatorMetrics, type ReplicatorMetrics } from './metrics.js'

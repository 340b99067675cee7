export { HealthMonitor, type HealthMonitorOptions } from './health-monitor.js'
export { measureLag, type MasterHeartbeat } from './lag.js'
export { LagMonitor, type LagMonitorOptions } from './lag-monitor.js'
export {
  assertStrategy,
  fallbackReason,
  isEligible,
  READ_ROUTING_STRATEGIES,
  ReadRouter,
  type FallbackReason,
  type ReadRoutingStrategy,
  type RouteOptions,
  type RoutingCandidate,
} from './read-router.js'
export { replicaStateOf, type MonitoredReplica, type ReplicaState, type ReplicaStateInputs } from './replica-state.js'

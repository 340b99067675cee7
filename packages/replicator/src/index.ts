// The facade: what an application needs to run several databases as one. Importing a dialect
// package (`@mostajs/replicator-dialect-postgres`, …) registers that database kind.
export { ReplicationManager } from './replication-manager.js'
export { ReplicationSession } from './session.js'
export { isReadOnlySql } from './guarded-dialect.js'
export { holdTransaction, type HeldTransaction } from './held-transaction.js'
export type { AutoFailoverOptions, ReplicationManagerOptions } from './options.js'
export type { ReplicationManagerEvents } from './events.js'
export type { ReplicatorLogger } from './manager-logger.js'
export type {
  PickedReplica,
  ProjectManagerLike,
  PromotionResult,
  ReplicaConfig,
  ReplicaStatus,
  ReplicationKind,
  ResolveReadOptions,
  RetentionWarning,
  RoutingStatus,
} from './types.js'
export { READ_ROUTING_STRATEGIES, type ReadRoutingStrategy, type ReplicaState } from '@mostajs/replicator-routing'
export {
  openChangeStream,
  type CollectionStats,
  type OpenChangeStreamOptions,
  type ReplicationRuleConfig,
  type ResolvedRuleConfig,
  type RuleProgress,
  type StreamState,
  type SyncStats,
} from '@mostajs/replicator-cdc'
export { parseTree, readTreeFile, writeTreeFile, type ReplicatorTree } from '@mostajs/replicator-persistence'
export {
  connectDialect,
  createDialect,
  EntityService,
  FileTopologyStore,
  HEARTBEAT_COLLECTION,
  HEARTBEAT_SCHEMA,
  maskSecretsInText,
  maskUri,
  MemoryTopologyStore,
  ReplicatorError,
  scanAll,
  type ChangeEvent,
  type ChangeStream,
  type CollectionSchema,
  type Dialect,
  type DialectConfig,
  type EntitySchema,
  type Filter,
  type Position,
  type ProjectTopology,
  type ReplicatorErrorCode,
  type Row,
  type TopologyStore,
} from '@mostajs/replicator-core'

// The contracts of @mostajs/replicator: Dialect and its capabilities, ChangeEvent, Position,
// EntityService, portable types, errors, the dialect registry. The SQL base the dialects share
// is the `@mostajs/replicator-core/sql` subpath (for dialect authors).

export {
  isReplicatorError,
  maskSecretsInText,
  ReplicatorError,
  type ReplicatorErrorCode,
  type ReplicatorErrorOptions,
} from './errors.js'
export { jsonPath, listProblems, problemsAt, type PathProblem } from './json-path.js'
export { hasMaskedSecret, maskUri } from './mask-uri.js'
export {
  NATIVE_TYPES,
  nativeTypeFor,
  normalizeDecimal,
  PORTABLE_TYPES,
  toDateString,
  TYPE_DEFAULTS,
  type ColumnType,
  type NativeTypeFamily,
  type PortableType,
} from './portable-types.js'
export {
  collectionSchemaOf,
  isEntitySchema,
  toCollectionSchema,
  type CollectionDescription,
  type CollectionSchema,
  type ColumnDescription,
  type ColumnSchema,
  type EntityField,
  type EntityFieldType,
  type EntityIndex,
  type EntityRelation,
  type EntitySchema,
  type Row,
  type RowKey,
} from './schema.js'
export { type FieldOperators, type Filter, type FindOptions, type UpdateChanges } from './filter.js'
export {
  DEFAULT_CAPABILITIES,
  HEARTBEAT_COLLECTION,
  HEARTBEAT_SCHEMA,
  type BulkCopy,
  type CaptureBacklog,
  type CaptureOptions,
  type CaptureSettings,
  type ChangeBatch,
  type ChangeCapture,
  type ChangeEvent,
  type ChangeStream,
  type Dialect,
  type DialectCapabilities,
  type DialectConfig,
  type DialectOperations,
  type ExecuteOptions,
  type ExecuteResult,
  type Heartbeat,
  type HeartbeatStore,
  type NativeReplication,
  type NativeReplicationStatus,
  type Position,
  type ReadChangesOptions,
  type ScanOptions,
  type ScanPage,
} from './dialect.js'
export {
  mergeNativeRows,
  NATIVE_NULL,
  NATIVE_UNSENT,
  nativeColumnsFit,
  nativeRowComplete,
  nativeText,
  type NativeRow,
} from './native-row.js'
export { describeKey, keyIdentity, keyOfRow, keyToObject, requirePrimaryKey } from './row-keys.js'
export { SpillFile } from './spill-file.js'
export {
  connectDialect,
  createDialect,
  DIALECT_PACKAGE_NAMES,
  DIALECT_PACKAGES,
  dialectDescriptor,
  dialectDescriptors,
  registerDialect,
  registeredDialects,
  replicationFamilyOf,
  type DialectDescriptor,
  type DialectFactory,
  type SqlFamily,
} from './registry.js'
export {
  EntityService,
  type EntityCreatedEvent,
  type EntityDeletedEvent,
  type EntityRef,
  type EntityUpdatedEvent,
} from './entity-service.js'
export { scanAll } from './scan-all.js'
export { withTimeout } from './with-timeout.js'
export type { Leadership, ProjectTopology, TopologyStore } from './topology-store.js'
export { MemoryTopologyStore } from './memory-topology-store.js'
export { FileTopologyStore } from './file-topology-store.js'

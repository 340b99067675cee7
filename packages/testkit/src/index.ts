export {
  findExecutable,
  mariadbAvailability,
  postgresAvailability,
  requireBackends,
  type BackendAvailability,
} from './backends.js'
export { freePort } from './free-port.js'
export { createPostgresDatabase, startPostgres, startPostgresStandby, type RunningPostgres } from './postgres.js'
export { startPostgresPair, type PostgresPair } from './postgres-pair.js'
export { createMariaDBDatabase, startMariaDB, startMariaDBReplica, type RunningMariaDB } from './mariadb.js'
export { sqliteFile, type TempSqliteFile } from './sqlite.js'
export { trackForExit } from './cleanup.js'
export { etcdAvailable, startEtcdCluster, type RunningEtcd } from './etcd.js'
export {
  createNetworkNamespace,
  networkNamespacesAvailable,
  startPartitionableLink,
  type NetworkNamespace,
  type PartitionableLink,
} from './network.js'

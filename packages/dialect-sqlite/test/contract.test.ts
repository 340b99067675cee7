import '@mostajs/replicator-dialect-sqlite'
import {
  dialectUnderTest,
  testCaptureContract,
  testDialectContract,
  testHeartbeatContract,
} from '@mostajs/replicator-testkit/vitest'

// SQLite has no native replication (one file): its replicas are managed.
const sqlite = dialectUnderTest('sqlite')
testDialectContract(sqlite)
testCaptureContract(sqlite)
testHeartbeatContract(sqlite)

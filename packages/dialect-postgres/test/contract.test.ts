import '@mostajs/replicator-dialect-postgres'
import {
  dialectUnderTest,
  testCaptureContract,
  testDialectContract,
  testHeartbeatContract,
  testNativeReplicationContract,
} from '@mostajs/replicator-testkit/vitest'

const postgres = dialectUnderTest('postgres')
testDialectContract(postgres)
testCaptureContract(postgres)
testHeartbeatContract(postgres)
testNativeReplicationContract(postgres)

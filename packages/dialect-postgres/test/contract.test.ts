import '@mostajs/replicator-dialect-postgres'
import {
  dialectUnderTest,
  testCaptureContract,
  testDialectContract,
  testHeartbeatContract,
  testNativeReplicationContract,
} from '@mostajs/replicator-testkit/vitest'
import { postgresCaptureTests } from './postgres-capture.js'

const postgres = dialectUnderTest('postgres')
testDialectContract(postgres)
testCaptureContract(postgres, { additionalTests: postgresCaptureTests })
testHeartbeatContract(postgres)
testNativeReplicationContract(postgres)

import '@mostajs/replicator-dialect-mysql'
import {
  dialectUnderTest,
  testCaptureContract,
  testDialectContract,
  testHeartbeatContract,
  testNativeReplicationContract,
} from '@mostajs/replicator-testkit/vitest'

// The same server under both names: `mariadb` (UUID type, RETURNING) and plain `mysql`.
for (const name of ['mariadb', 'mysql']) {
  const subject = dialectUnderTest('mariadb', name)
  testDialectContract(subject)
  testCaptureContract(subject)
  testHeartbeatContract(subject)
  testNativeReplicationContract(subject)
}

import '@mostajs/replicator-dialect-mysql'
import { dialectUnderTest, testDialectContract } from '@mostajs/replicator-testkit/vitest'

// The same server under both names: `mariadb` (UUID type, RETURNING) and plain `mysql`.
testDialectContract(dialectUnderTest('mariadb', 'mariadb'))
testDialectContract(dialectUnderTest('mariadb', 'mysql'))

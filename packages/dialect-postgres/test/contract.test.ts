import '@mostajs/replicator-dialect-postgres'
import { dialectUnderTest, testDialectContract } from '@mostajs/replicator-testkit/vitest'

testDialectContract(dialectUnderTest('postgres'))

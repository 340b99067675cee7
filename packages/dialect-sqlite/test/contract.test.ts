import '@mostajs/replicator-dialect-sqlite'
import { dialectUnderTest, testDialectContract } from '@mostajs/replicator-testkit/vitest'

testDialectContract(dialectUnderTest('sqlite'))

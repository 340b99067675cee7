import { expect, it } from 'vitest'
import { describeOnDialect, type DialectUnderTest } from './contract-helpers.js'

/**
 * The native replication contract that a single server can check, for every dialect that has
 * `replication`: it reports itself as a primary. (Promotion, read-only and re-pointing need a
 * replica: the topology tests run them on real standbys.)
 */
export function testNativeReplicationContract(subject: DialectUnderTest): void {
  describeOnDialect(subject, 'native replication contract', (db) => {
    it('a primary reports itself as one', async () => {
      const replication = db().replication
      expect(replication).toBeDefined()
      const status = await replication!.status()
      expect(status.role).toBe('primary')
    })
  })
}

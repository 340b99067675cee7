import { afterAll, beforeAll, describe } from 'vitest'
import type { Dialect } from '@mostajs/replicator-core'
import type { DialectUnderTest } from './contract-helpers.js'
import { people, SEED } from './contract-fixtures.js'
import { keylessContract } from './keyless-contract.js'
import { readWriteContract } from './read-write-contract.js'
import { schemaContract } from './schema-contract.js'

export { expectReplicatorError, expectThrownReplicatorError, type DialectUnderTest } from './contract-helpers.js'

/**
 * The contract every dialect passes against its real server: CRUD, the filter operators,
 * sort/skip/limit, idempotent upserts, deletes, keyset scans, transactions, introspection,
 * identifier quoting and the error codes of bad input.
 */
export function testDialectContract(subject: DialectUnderTest): void {
  const title = subject.connect
    ? `dialect contract: ${subject.name}`
    : `dialect contract: ${subject.name} (skipped: ${subject.skipReason})`
  describe.skipIf(!subject.connect)(title, () => {
    let dialect: Dialect
    let cleanup: () => Promise<void> = async () => {}

    beforeAll(async () => {
      const connected = await subject.connect!()
      dialect = connected.dialect
      cleanup = async () => {
        await dialect.close()
        await connected.cleanup()
      }
      await dialect.ensureCollection(people)
      await dialect.upsertMany('people', SEED)
    })

    afterAll(async () => {
      await cleanup()
    })

    readWriteContract(subject, () => dialect)
    schemaContract(subject, () => dialect)
    keylessContract(() => dialect)
  })
}
export { testCaptureContract, type CaptureContractOptions } from './capture-contract.js'
export { testHeartbeatContract } from './heartbeat-contract.js'
export { testNativeReplicationContract } from './replication-contract.js'

import { afterAll, beforeAll, describe, expect } from 'vitest'
import { ReplicatorError, type Dialect } from '@mostajs/replicator-core'

/** How the contract suite obtains a connected dialect on a fresh, empty database. */
export interface DialectUnderTest {
  /** Label in test names (`postgres`, `mariadb`, `sqlite`). */
  name: string
  /** Null when the backend is unavailable; the suite is then skipped with `skipReason`. */
  connect: (() => Promise<{ dialect: Dialect; cleanup(): Promise<void> }>) | null
  skipReason?: string
}

/** Asserts that `promise` rejects with a ReplicatorError of `code` and returns it. */
export async function expectReplicatorError(promise: Promise<unknown>, code: string): Promise<ReplicatorError> {
  let caught: unknown
  try {
    await promise
  } catch (error) {
    caught = error
  }
  expect(caught, `expected a ReplicatorError ${code}`).toBeDefined()
  expect(ReplicatorError.isInstance(caught), `not a ReplicatorError: ${String(caught)}`).toBe(true)
  expect((caught as ReplicatorError).code, (caught as Error).message).toBe(code)
  return caught as ReplicatorError
}

/** Expects `call` to throw a ReplicatorError of `code` at once (not a rejected promise); returns it. */
export function expectThrownReplicatorError(call: () => unknown, code: string): ReplicatorError {
  let caught: unknown
  try {
    call()
  } catch (error) {
    caught = error
  }
  expect(caught, `expected ${code} to be thrown at once`).toBeDefined()
  expect(ReplicatorError.isInstance(caught), `not a ReplicatorError: ${String(caught)}`).toBe(true)
  expect((caught as ReplicatorError).code, (caught as Error).message).toBe(code)
  return caught as ReplicatorError
}

/**
 * A describe block on a fresh database of `subject` (skipped with its reason when the backend
 * is missing); `body` defines tests reading the connected dialect through `db()`.
 */
export function describeOnDialect(subject: DialectUnderTest, title: string, body: (db: () => Dialect) => void): void {
  const named = subject.connect
    ? `${title}: ${subject.name}`
    : `${title}: ${subject.name} (skipped: ${subject.skipReason})`
  describe.skipIf(!subject.connect)(named, () => {
    let dialect: Dialect
    let cleanup: () => Promise<void> = async () => {}
    beforeAll(async () => {
      const connected = await subject.connect!()
      dialect = connected.dialect
      cleanup = async () => {
        await dialect.close()
        await connected.cleanup()
      }
    })
    afterAll(async () => {
      await cleanup()
    })
    body(() => dialect)
  })
}

import { ReplicatorError, type Dialect } from '@mostajs/replicator-core'

/** Dialect members that change data: a session records its position after each of them. */
const WRITES = new Set([
  'insert',
  'update',
  'delete',
  'upsertMany',
  'deleteMany',
  'transaction',
  '$transaction',
  'query',
  'ensureCollection',
])

/** What the guard needs to know of the replica behind a dialect. */
export interface GuardTarget {
  readonly fenced: boolean
  readonly label: string
}

/**
 * Wraps a replica's dialect so that every call made after the replica was fenced fails with
 * FENCED (services resolved before a promotion never reach the old master), and so that
 * `onWrite` runs after each successful write (read-your-writes sessions).
 */
export function guardDialect(dialect: Dialect, target: GuardTarget, onWrite?: () => void): Dialect {
  const wrappers = new Map<PropertyKey, unknown>() // one wrapper per method, not one per call
  return new Proxy(dialect, {
    get(object, property, receiver) {
      const value = Reflect.get(object, property, receiver)
      if (typeof value !== 'function' || property === 'constructor') return value
      const cached = wrappers.get(property)
      if (cached) return cached
      const name = String(property)
      const wrapper = function guarded(this: unknown, ...args: unknown[]) {
        if (target.fenced) {
          return Promise.reject(
            new ReplicatorError(
              'FENCED',
              `${target.label} was demoted by a promotion and is fenced; resolve a new service from the manager (resolveWriteService / resolveReadService).`,
              {
                details: { replica: target.label, operation: name },
              },
            ),
          )
        }
        const result = (value as (...callArgs: unknown[]) => unknown).apply(object, args)
        if (onWrite && WRITES.has(name) && result instanceof Promise)
          return result.then((settled) => {
            onWrite()
            return settled
          })
        return result
      }
      wrappers.set(property, wrapper)
      return wrapper
    },
  })
}

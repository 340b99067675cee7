import { ReplicatorError, type Dialect } from '@mostajs/replicator-core'

/** Dialect members that change data: a session records its position after each of them. */
const WRITES = new Set([
  'insert',
  'update',
  'delete',
  'upsertMany',
  'upsertNative',
  'deleteMany',
  'insertMany',
  'deleteOne',
  'replaceOne',
  'transaction',
  '$transaction',
  'query',
  'execute',
  'ensureCollection',
  'ensureColumns',
])

/** Members that run raw SQL: a read service runs those that only read. */
const RAW_SQL = new Set(['query', 'execute'])

/** What the guard needs to know of the replica behind a dialect. */
export interface GuardTarget {
  readonly fenced: boolean
  readonly label: string
}

/** What a guarded dialect runs around each call. */
export interface GuardHooks {
  /** After each successful write (read-your-writes sessions). */
  onWrite?: () => void
  /**
   * Before each call: null when this process's view of the topology is fresh, else a promise
   * that refreshes it (a shared store): the call then runs, or fails with FENCED if the
   * refreshed view demoted this replica.
   */
  staleView?: () => Promise<void> | null
  /** A read service: writes fail with READ_ONLY (raw queries that only read pass). */
  readOnly?: boolean
}

/**
 * Raw SQL that only reads: SELECT, WITH, SHOW, EXPLAIN, VALUES, TABLE, DESCRIBE naming no
 * data-changing statement (nor SELECT … INTO) and taking no row lock (FOR UPDATE/SHARE: a
 * standby refuses them), or a PRAGMA without `=`. Conservative: a read that merely mentions
 * such a word is refused too.
 */
export function isReadOnlySql(sql: unknown): boolean {
  if (typeof sql !== 'string') return false
  const text = sql.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ' ').trim()
  if (/^pragma\b/i.test(text)) return !text.includes('=')
  if (!/^(select|with|show|explain|values|table|describe)\b/i.test(text)) return false
  if (/\bfor\s+(share|no\s+key\s+update|key\s+share)\b/i.test(text)) return false // row locks (FOR UPDATE: `update` below)
  return !/\b(insert|update|delete|merge|truncate|create|alter|drop|grant|revoke|into|nextval|setval)\b/i.test(text)
}

/**
 * Wraps a replica's dialect so that every call made after the replica was fenced fails with
 * FENCED (services resolved before a promotion never reach the old master), so that a call
 * made on a stale view of a shared topology waits for a fresh one, and so that `onWrite` runs
 * after each successful write.
 */
export function guardDialect(dialect: Dialect, target: GuardTarget, hooks: GuardHooks = {}): Dialect {
  const { onWrite, staleView, readOnly } = hooks
  const wrappers = new Map<PropertyKey, unknown>() // one wrapper per method, not one per call
  return new Proxy(dialect, {
    get(object, property, receiver) {
      const value = Reflect.get(object, property, receiver)
      if (typeof value !== 'function' || property === 'constructor') return value
      const cached = wrappers.get(property)
      if (cached) return cached
      const name = String(property)
      const call = function guarded(this: unknown, ...args: unknown[]): unknown {
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
        if (readOnly && WRITES.has(name) && !(RAW_SQL.has(name) && isReadOnlySql(args[0])))
          return Promise.reject(
            new ReplicatorError(
              'READ_ONLY',
              `${target.label}: ${name}() was asked of a read service (resolveReadService), which does not write: a write on a slave diverges from its master. Write through resolveWriteService, or resolve with { allowWrites: true }.`,
              { details: { replica: target.label, operation: name } },
            ),
          )
        const result = (value as (...callArgs: unknown[]) => unknown).apply(object, args)
        if (onWrite && WRITES.has(name) && result instanceof Promise)
          return result.then((settled) => {
            onWrite()
            return settled
          })
        return result
      }
      // without a shared store, the guard is the fenced check alone
      const wrapper = !staleView
        ? call
        : function checked(this: unknown, ...args: unknown[]) {
            const refreshing = staleView()
            const result = refreshing ? refreshing.then(() => call(...args)) : call(...args)
            return result instanceof Promise ? result.then(confirmed) : result
          }
      /**
       * A call that ran while its replica was demoted (checked before a pause of this process,
       * sent after it) may have reached a master that is no longer the master: once the view
       * is fresh again, its result is returned only if the replica was not demoted meanwhile.
       */
      const confirmed = (settled: unknown): unknown => {
        const demoted = () => {
          if (!target.fenced) return settled
          throw new ReplicatorError(
            'FENCED',
            `${target.label} was demoted while this call ran on it; the call may have reached it and is not acknowledged: retry it on the new master.`,
            { details: { replica: target.label, operation: name } },
          )
        }
        const refreshing = staleView!()
        return refreshing ? refreshing.then(demoted) : demoted()
      }
      wrappers.set(property, wrapper)
      return wrapper
    },
  })
}

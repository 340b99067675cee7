import { maskUri } from './mask-uri.js'

const MARKER = Symbol.for('@mostajs/replicator.error')

/** Stable error codes. Match on `error.code`, never on the message. */
export type ReplicatorErrorCode =
  | 'UNKNOWN_DIALECT'
  | 'CONFIG_INVALID'
  | 'CONNECTION_FAILED'
  | 'NOT_CONNECTED'
  | 'COLLECTION_NOT_FOUND'
  | 'COLUMN_NOT_FOUND'
  | 'FILTER_INVALID'
  | 'ROW_REJECTED'
  | 'TYPE_UNSUPPORTED'
  | 'QUERY_FAILED'
  | 'NOT_SUPPORTED'
  | 'REPLICA_NOT_FOUND'
  | 'LAG_TOO_HIGH'
  | 'FENCED'
  /** A capture's log position is gone on the source (an invalidated slot, purged binary logs): the rule re-seeds. */
  | 'CAPTURE_LOST'
  /** A write asked of a read service (resolveReadService): writes go through resolveWriteService. */
  | 'READ_ONLY'

/** Options of {@link ReplicatorError}. */
export interface ReplicatorErrorOptions {
  cause?: unknown
  /** Machine-readable context (collection, key, dialect, masked uri, …). */
  details?: Record<string, unknown>
}

/**
 * The one error type of @mostajs/replicator. Recognise it with
 * `ReplicatorError.isInstance(error)` (works across duplicate installs), then switch on `code`.
 *
 * @example
 * try { await dialect.connect() } catch (error) {
 *   if (ReplicatorError.isInstance(error) && error.code === 'CONNECTION_FAILED') retryLater()
 * }
 */
export class ReplicatorError extends Error {
  readonly [MARKER] = true
  readonly code: ReplicatorErrorCode
  readonly details: Record<string, unknown>

  constructor(code: ReplicatorErrorCode, message: string, options: ReplicatorErrorOptions = {}) {
    // A URI that slipped into a message must never carry its password.
    super(maskSecretsInText(message), options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'ReplicatorError'
    this.code = code
    this.details = options.details ?? {}
  }

  /** True for any ReplicatorError, even one thrown by another copy of this package. */
  static isInstance(value: unknown): value is ReplicatorError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[MARKER] === true
  }
}

/** Shorthand for `ReplicatorError.isInstance(value) && value.code === code`. */
export function isReplicatorError(value: unknown, code?: ReplicatorErrorCode): value is ReplicatorError {
  return ReplicatorError.isInstance(value) && (code === undefined || value.code === code)
}

const URI_IN_TEXT = /[a-z][a-z0-9+.-]*:\/\/[^\s'"<>]+/gi

/** Masks the password of every URI found in a piece of text. */
export function maskSecretsInText(text: string): string {
  return text.replace(URI_IN_TEXT, (uri) => maskUri(uri))
}

// What a driver error says, made safe to show: its message without the password, its fields.
import type { ReplicatorErrorCode } from '../errors.js'

/** The error code of each kind of driver error a flavor tells apart. */
export const KIND_TO_CODE: Record<string, ReplicatorErrorCode> = {
  'row-rejected': 'ROW_REJECTED',
  'missing-table': 'COLLECTION_NOT_FOUND',
  connection: 'CONNECTION_FAILED',
  other: 'QUERY_FAILED',
}

/** The message of a driver error (all of them, for an AggregateError). */
export function errorMessage(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length) return error.errors.map(errorMessage).join('; ')
  if (error instanceof Error) return error.message || (error as { code?: string }).code || error.name
  return String(error)
}

/** The driver's own fields of an error (code, constraint, …) as `driverCode`, `driverConstraint`, …. */
export function driverDetails(error: unknown): Record<string, unknown> {
  if (typeof error !== 'object' || error === null) return {}
  const source = error as Record<string, unknown>
  const details: Record<string, unknown> = {}
  for (const field of ['code', 'errno', 'sqlState', 'constraint', 'detail', 'column', 'table']) {
    if (source[field] !== undefined && source[field] !== null)
      details[`driver${field[0]!.toUpperCase()}${field.slice(1)}`] = source[field]
  }
  return details
}

function passwordOf(uri: string): string | undefined {
  try {
    const parsed = new URL(uri)
    return parsed.password ? decodeURIComponent(parsed.password) : undefined
  } catch {
    return undefined
  }
}

/** Removes the URI's password from a text even where it does not appear as part of a URI. */
export function redactPassword(text: string, uri: string): string {
  const password = passwordOf(uri)
  return password && password.length >= 3 ? text.split(password).join('****') : text
}

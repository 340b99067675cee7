const SECRET_PARAMS = /([?&](?:password|pass|pwd|secret|token|sslpassword)=)[^&#]*/gi

/**
 * Hides the password of a connection URI so it can be shown in errors, logs and status.
 * `postgres://app:s3cret@db:5432/main?password=x` → `postgres://app:****@db:5432/main?password=****`.
 * Non-URI strings (an SQLite file path) come back unchanged.
 */
export function maskUri(uri: string): string {
  if (typeof uri !== 'string') return String(uri)
  return maskUserinfo(uri).replace(SECRET_PARAMS, '$1****')
}

const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i
/** What may follow the userinfo's last `@`: a host (and port), then the path, query or the end. */
const HOST_THEN_REST = /^[^@/?#\s]*(?:[/?#]|$)/

/**
 * Masks the password of `scheme://user:password@host…`. The userinfo ends at the last `@`
 * that is followed by a host and not preceded by a path or query, so a password holding `@`
 * (which URL parsers accept) is masked whole.
 */
function maskUserinfo(uri: string): string {
  const scheme = SCHEME.exec(uri)?.[0]
  if (!scheme) return uri
  const rest = uri.slice(scheme.length)
  let end = -1
  for (let at = rest.indexOf('@'); at !== -1; at = rest.indexOf('@', at + 1)) {
    if (/[/?#]/.test(rest.slice(0, at))) break
    if (HOST_THEN_REST.test(rest.slice(at + 1))) end = at
  }
  if (end === -1) return uri
  const userinfo = rest.slice(0, end)
  const colon = userinfo.indexOf(':')
  if (colon === -1 || colon === userinfo.length - 1) return uri // no password
  return `${scheme}${userinfo.slice(0, colon + 1)}****${rest.slice(end)}`
}

const MASKED_USERINFO = /^[a-z][a-z0-9+.-]*:\/\/[^/?#@]*:\*+@/i
const MASKED_PARAM = /[?&](?:password|pass|pwd|secret|token|sslpassword)=\*+(?:[&#]|$)/i

/**
 * True when a URI carries a password that was masked (`***`, `****`) rather than the secret:
 * such a URI was saved by a tool that hides secrets and can never connect.
 * `postgres://app:***@db/shop` → true; `postgres://app:${DB_PASSWORD}@db/shop` → false.
 */
export function hasMaskedSecret(uri: string): boolean {
  return typeof uri === 'string' && (MASKED_USERINFO.test(uri) || MASKED_PARAM.test(uri))
}

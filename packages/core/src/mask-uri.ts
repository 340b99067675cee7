const SECRET_PARAMS = /([?&](?:password|pass|pwd|secret|token|sslpassword)=)[^&#]*/gi

/**
 * Hides the password of a connection URI so it can be shown in errors, logs and status.
 * `postgres://app:s3cret@db:5432/main?password=x` → `postgres://app:****@db:5432/main?password=****`.
 * Non-URI strings (an SQLite file path) come back unchanged.
 */
export function maskUri(uri: string): string {
  if (typeof uri !== 'string') return String(uri)
  let masked = uri.replace(
    /^([a-z][a-z0-9+.-]*:\/\/[^/?#@]*?:)([^@/?#]*)(@)/i,
    (_all, head: string, password: string, at: string) => (password === '' ? `${head}${at}` : `${head}****${at}`),
  )
  masked = masked.replace(SECRET_PARAMS, '$1****')
  return masked
}

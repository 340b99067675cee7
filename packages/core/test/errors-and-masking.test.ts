import { describe, expect, it } from 'vitest'
import { isReplicatorError, maskSecretsInText, maskUri, ReplicatorError } from '../src/index.js'

describe('maskUri', () => {
  it.each([
    ['postgres://app:s3cret@db:5432/main', 'postgres://app:****@db:5432/main'],
    ['mysql://root:p%40ss@127.0.0.1:3306/x?ssl=true', 'mysql://root:****@127.0.0.1:3306/x?ssl=true'],
    ['postgres://app@db/main', 'postgres://app@db/main'],
    ['postgres://app:@db/main', 'postgres://app:@db/main'],
    ['postgres://db/main?user=a&password=hunter2&x=1', 'postgres://db/main?user=a&password=****&x=1'],
    ['mariadb://u:pa:ss@h/d', 'mariadb://u:****@h/d'],
    ['postgres://u:p@ss@h/db', 'postgres://u:****@h/db'],
    ['postgres://u:p@ss@w@rd@h:5432/db?sslmode=require', 'postgres://u:****@h:5432/db?sslmode=require'],
    ['postgres://u:pw@h/db?application_name=a@b', 'postgres://u:****@h/db?application_name=a@b'],
    ['./data/app.db', './data/app.db'],
    [':memory:', ':memory:'],
  ])('%s → %s', (input, expected) => {
    expect(maskUri(input)).toBe(expected)
  })

  it('masks a password holding @ inside a text too', () => {
    expect(maskSecretsInText('cannot reach postgres://u:p@ss@h/db: refused')).toBe(
      'cannot reach postgres://u:****@h/db: refused',
    )
  })

  it('masks every URI inside a text', () => {
    expect(maskSecretsInText('from postgres://a:b1@h/d to mysql://c:d2@h/e failed')).toBe(
      'from postgres://a:****@h/d to mysql://c:****@h/e failed',
    )
  })
})

describe('ReplicatorError', () => {
  it('keeps code, cause and details, and masks URIs in its message', () => {
    const cause = new Error('socket closed')
    const error = new ReplicatorError('CONNECTION_FAILED', 'Cannot reach postgres://app:topsecret@db/main', {
      cause,
      details: { dialect: 'postgres' },
    })
    expect(error.code).toBe('CONNECTION_FAILED')
    expect(error.cause).toBe(cause)
    expect(error.details).toEqual({ dialect: 'postgres' })
    expect(error.message).not.toContain('topsecret')
    expect(error.message).toContain('postgres://app:****@db/main')
  })

  it('is recognised by marker, also when thrown by another copy of the package', () => {
    const foreign = Object.assign(new Error('x'), {
      code: 'LAG_TOO_HIGH',
      [Symbol.for('@mostajs/replicator.error')]: true,
    })
    expect(ReplicatorError.isInstance(foreign)).toBe(true)
    expect(isReplicatorError(foreign, 'LAG_TOO_HIGH')).toBe(true)
    expect(isReplicatorError(foreign, 'FENCED')).toBe(false)
    expect(ReplicatorError.isInstance(new Error('plain'))).toBe(false)
    expect(ReplicatorError.isInstance(null)).toBe(false)
  })
})

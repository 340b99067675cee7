import { describe, expect, it } from 'vitest'
import { gtidSetCovers, highestPerSource, withGtid } from '../src/gtid-sets.js'

describe('GTID positions', () => {
  it('reads the highest transaction per MariaDB domain and per MySQL server uuid', () => {
    expect(highestPerSource('0-1-5,1-2-70')).toEqual(
      new Map([
        ['0', 5n],
        ['1', 70n],
      ]),
    )
    expect(highestPerSource('3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7-9,\nabc:1-2')).toEqual(
      new Map([
        ['3e11fa47-71ca-11e1-9e33-c80aa9429562', 9n],
        ['abc', 2n],
      ]),
    )
    expect(highestPerSource('0-1-18446744073709551615').get('0')).toBe(18446744073709551615n) // exact beyond 2^53
  })

  it('a position is covered by a cut at or after it, per source', () => {
    expect(gtidSetCovers('0-1-10', '0-1-10')).toBe(true)
    expect(gtidSetCovers('0-1-10', '0-1-9')).toBe(true)
    expect(gtidSetCovers('0-1-10', '0-1-11')).toBe(false)
    expect(gtidSetCovers('0-1-10,1-1-3', '0-1-9,1-1-4')).toBe(false)
    expect(gtidSetCovers('0-1-10', '1-1-1')).toBe(false) // a domain the cut has not seen
    expect(gtidSetCovers('u:1-10', 'u:1-7')).toBe(true)
    expect(gtidSetCovers('u:1-10', 'u:1-11')).toBe(false)
  })

  it("adds a transaction's own GTID to a state that lacks it", () => {
    expect(withGtid('0-1-5,1-1-2', '0-1-6')).toBe('1-1-2,0-1-6')
    expect(withGtid('', '0-1-1')).toBe('0-1-1')
    expect(withGtid('0-1-5', undefined)).toBe('0-1-5')
    expect(withGtid('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', '3e11fa47-71ca-11e1-9e33-c80aa9429562:6')).toBe(
      '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-6',
    )
    expect(withGtid('a:1-3:7-9,b:1', 'a:5')).toBe('a:1-3:5:7-9,b:1')
    expect(withGtid('a:1-3:5', 'a:4')).toBe('a:1-5')
    expect(withGtid('a:1-3', 'b:1')).toBe('a:1-3,b:1')
  })
})

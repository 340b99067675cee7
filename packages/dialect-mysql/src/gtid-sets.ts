import { GtidSet } from '@vlasky/zongji'
/**
 * The highest transaction number per GTID source in a position: MariaDB `domain-server-seq`
 * lists (per domain), MySQL `uuid:1-5:7-9` sets (per server uuid).
 */
export function highestPerSource(gtids: string): Map<string, bigint> {
  const highest = new Map<string, bigint>()
  const keep = (source: string, value: bigint) => {
    if (value > (highest.get(source) ?? -1n)) highest.set(source, value)
  }
  for (const part of gtids.split(',').map((text) => text.trim())) {
    if (!part) continue
    const mariadb = /^(\d+)-\d+-(\d+)$/.exec(part)
    if (mariadb) {
      keep(mariadb[1]!, BigInt(mariadb[2]!))
      continue
    }
    const [uuid, ...intervals] = part.split(':')
    for (const interval of intervals) {
      const end = interval.split('-').pop()
      if (end && /^\d+$/.test(end)) keep(uuid!.toLowerCase(), BigInt(end))
    }
  }
  return highest
}

/**
 * True when the log state `position` is at or before `cut`: both are states of the same
 * binary log, so each source's transaction number only grows along it.
 */
export function gtidSetCovers(cut: string, position: string): boolean {
  const limits = highestPerSource(cut)
  for (const [source, value] of highestPerSource(position)) if (value > (limits.get(source) ?? 0n)) return false
  return true
}

/**
 * The log state `set` plus the transaction `gtid`. ZongJi adds a transaction to its set at the
 * next commit marker, which a DDL statement (TRUNCATE) does not have: its own GTID is added here.
 */
export function withGtid(set: string, gtid: string | undefined): string {
  if (!gtid) return set
  const mariadb = /^(\d+)-\d+-\d+$/.exec(gtid)
  if (mariadb) {
    const others = set
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry && !entry.startsWith(`${mariadb[1]}-`))
    return [...others, gtid].join(',')
  }
  const mysql = GtidSet.parse(set.replace(/\s/g, ''))
  mysql.add(gtid)
  return mysql.toString()
}

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
  // MySQL: uuid:intervals, the new transaction number joined to its neighbours
  const separator = gtid.lastIndexOf(':')
  const source = gtid.slice(0, separator).toLowerCase()
  const number = BigInt(gtid.slice(separator + 1))
  const blocks = set
    .replace(/\s/g, '')
    .split(',')
    .filter(Boolean)
    .map((block) => block.split(':'))
  let block = blocks.find(([uuid]) => uuid!.toLowerCase() === source)
  if (!block) blocks.push((block = [source]))
  const intervals = block
    .slice(1)
    .map((interval) => interval.split('-').map(BigInt))
    .map(([first, last]) => [first!, last ?? first!] as [bigint, bigint])
  intervals.push([number, number])
  intervals.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const merged: Array<[bigint, bigint]> = []
  for (const [first, last] of intervals) {
    const previous = merged[merged.length - 1]
    if (previous && first <= previous[1] + 1n) previous[1] = last > previous[1] ? last : previous[1]
    else merged.push([first, last])
  }
  block.splice(
    1,
    block.length - 1,
    ...merged.map(([first, last]) => (first === last ? `${first}` : `${first}-${last}`)),
  )
  return blocks.map((parts) => parts.join(':')).join(',')
}

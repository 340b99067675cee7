import { createHash } from 'node:crypto'
import { scanAll, type Dialect } from '@mostajs/replicator'

/**
 * Fingerprint of a collection: row count and a hash of the sorted row hashes. Order-independent
 * on purpose: each database scans in its own key order (MariaDB's UUID type sorts differently
 * from PostgreSQL's).
 */
export async function fingerprint(dialect: Dialect, collection: string): Promise<{ rows: number; sha256: string }> {
  const rowHashes: string[] = []
  for await (const page of scanAll(dialect, collection, { pageSize: 1000 })) {
    for (const row of page) {
      const text = JSON.stringify(row, (_key, value) => (typeof value === 'bigint' ? value.toString() : value))
      rowHashes.push(createHash('sha256').update(text).digest('hex'))
    }
  }
  return {
    rows: rowHashes.length,
    sha256: createHash('sha256').update(rowHashes.sort().join('')).digest('hex').slice(0, 16),
  }
}

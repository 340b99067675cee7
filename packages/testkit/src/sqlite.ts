import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { trackForExit } from './cleanup.js'

/** A temp SQLite database file; `cleanup()` removes it (and its WAL files). */
export interface TempSqliteFile {
  path: string
  /** `sqlite:` URI of the file. */
  uri: string
  cleanup(): void
}

/** A fresh path for an SQLite database in its own temp dir. */
export function sqliteFile(name = 'test.db'): TempSqliteFile {
  const dir = mkdtempSync(join(tmpdir(), 'replicator-sqlite-'))
  const forget = trackForExit({ signal: 'SIGKILL', dirs: [dir] })
  const path = join(dir, name)
  return {
    path,
    uri: `sqlite:${path}`,
    cleanup() {
      rmSync(dir, { recursive: true, force: true })
      forget()
    },
  }
}

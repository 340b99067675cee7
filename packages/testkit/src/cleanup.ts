import { rmSync } from 'node:fs'

/** A process and its dirs to remove at exit; `pid` may be updated when the process restarts. */
export interface Tracked {
  pid?: number
  signal: NodeJS.Signals
  dirs: string[]
  /** Anything else to undo (synchronous: it runs at exit). */
  cleanup?: () => void
}

const tracked = new Set<Tracked>()
let hooked = false

/**
 * Remembers a process and its temp dirs so they are removed even when the test process
 * exits without running its teardown (a crash, Ctrl-C). Returns a function that forgets them.
 */
export function trackForExit(entry: Tracked): () => void {
  if (!hooked) {
    hooked = true
    process.once('exit', killAllNow)
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        killAllNow()
        process.exit(130)
      })
    }
  }
  tracked.add(entry)
  return () => tracked.delete(entry)
}

function killAllNow(): void {
  for (const entry of tracked) {
    if (entry.pid) {
      try {
        process.kill(entry.pid, entry.signal)
      } catch {
        /* already gone */
      }
    }
    try {
      entry.cleanup?.()
    } catch {
      /* best effort */
    }
    for (const dir of entry.dirs) {
      try {
        rmSync(dir, { recursive: true, force: true })
      } catch {
        /* best effort */
      }
    }
  }
  tracked.clear()
}

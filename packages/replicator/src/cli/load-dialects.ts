import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { DIALECT_PACKAGE_NAMES } from '@mostajs/replicator-core'

/** The dialect packages the command loads when the project has them installed (core's list). */
export const DIALECT_PACKAGES: readonly string[] = Object.keys(DIALECT_PACKAGE_NAMES)

/**
 * Imports every dialect package installed in the project around `from` (each import registers
 * its database kind) and returns the names loaded. They are looked up from the project, not
 * from this package: the command serves whatever databases the project uses.
 */
export async function loadInstalledDialects(from: string = process.cwd()): Promise<string[]> {
  const loaded: string[] = []
  for (const name of DIALECT_PACKAGES) {
    const entry = packageEntry(name, from)
    try {
      await import(entry ? pathToFileURL(entry).href : name)
      loaded.push(name)
    } catch {
      // not installed in this project
    }
  }
  return loaded
}

/** The entry file of package `name` in the nearest `node_modules` above `from`, or null. */
function packageEntry(name: string, from: string): string | null {
  for (let directory = resolve(from); ; directory = dirname(directory)) {
    const manifest = join(directory, 'node_modules', name, 'package.json')
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as {
        main?: string
        module?: string
        exports?: { '.'?: { import?: string | { default?: string }; source?: string } }
      }
      const exported = pkg.exports?.['.']
      // run from TypeScript sources (`--conditions=source`): load theirs, so every package shares one core
      const fromSource = process.execArgv.some((argument) => argument.includes('source'))
      const esm = typeof exported?.import === 'string' ? exported.import : exported?.import?.default
      const file = (fromSource && exported?.source) || esm || pkg.module || pkg.main
      return file ? join(dirname(manifest), file) : null
    }
    if (dirname(directory) === directory) return null
  }
}

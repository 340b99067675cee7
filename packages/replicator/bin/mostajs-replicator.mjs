#!/usr/bin/env node
// The `mostajs-replicator` command. An installed package runs its build; a checkout that was
// not built yet runs the TypeScript sources through the workspace's tsx.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const built = new URL('../dist/cli/main.js', import.meta.url)
if (existsSync(built)) {
  await import(built.href)
} else {
  const source = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url))
  const args = ['--conditions=source', '--import', 'tsx', source, ...process.argv.slice(2)]
  const child = spawnSync(process.execPath, args, { stdio: 'inherit' })
  process.exitCode = child.status ?? 1
}

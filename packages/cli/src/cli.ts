#!/usr/bin/env node
import '@mostajs/replicator-dialect-postgres'
import '@mostajs/replicator-dialect-mysql'
import '@mostajs/replicator-dialect-sqlite'
import { runCli } from '@mostajs/replicator/cli'

// This package brings the three dialects with the command; `@mostajs/replicator` has the same
// command and loads whichever dialects the project installed.
process.exitCode = await runCli(process.argv.slice(2))

import { loadInstalledDialects } from './load-dialects.js'
import { runCli } from './run-cli.js'

// The `mostajs-replicator` command: the dialects the project installed, then the command line.
await loadInstalledDialects()
process.exitCode = await runCli(process.argv.slice(2))

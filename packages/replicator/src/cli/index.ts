// `@mostajs/replicator/cli`: the `mostajs-replicator` command as a function (and the loader of
// the dialect packages installed beside it), for tools that embed it.
export { EXIT, runCli } from './run-cli.js'
export { DIALECT_PACKAGES, loadInstalledDialects } from './load-dialects.js'

export { EXIT, runCli } from '@mostajs/replicator/cli'

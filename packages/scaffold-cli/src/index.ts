export { EXIT, runCli } from './run-cli.js'

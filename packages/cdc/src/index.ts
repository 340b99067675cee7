export * from './rule-runner.js'

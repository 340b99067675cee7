export * from './rule-runner.js'
export * from './change-stream.js'

export { PostgresDialect } from './postgres-dialect.js'
export { postgresFlavor } from './postgres-flavor.js'

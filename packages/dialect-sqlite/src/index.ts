export { SqliteDialect, sqlitePathOf } from './sqlite-dialect.js'
export { sqliteFlavor } from './sqlite-flavor.js'

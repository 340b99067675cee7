export { MysqlDialect } from './mysql-dialect.js'
export { createMysqlFlavor } from './mysql-flavor.js'

export * from './promotion.js'

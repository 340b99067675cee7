export * from './read-router.js'

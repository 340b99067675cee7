export * from './tree-file.js'

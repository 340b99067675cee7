export {
  parseTree,
  readTreeFile,
  replicaConfigSchema,
  resolveEnvReferences,
  TREE_VERSION,
  treeSchema,
  validateReplicaConfig,
  writeTreeFile,
  type ReplicatorTree,
  type StoredReplica,
  type StoredRule,
  type TreeProblem,
} from './tree-file.js'

export {
  loadTreeFile,
  readTreeFile,
  resolveEnvReferences,
  validateReplicaConfig,
  writeTreeFile,
  type LoadedTreeFile,
  type TreeWriteResult,
} from './tree-file.js'
export {
  parseTree,
  replicaConfigSchema,
  TREE_VERSION,
  treeFileOf,
  treeFormatOf,
  type KeyedReplica,
  type KeyedRule,
  type ReplicatorTree,
  type StoredReplica,
  type StoredRule,
  type TreeFile,
  type TreeFormat,
  type TreeProblem,
} from './tree-schema.js'

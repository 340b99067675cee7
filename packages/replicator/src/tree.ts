import type { ReplicationRuleConfig } from '@mostajs/replicator-cdc'
import type { ReplicatorTree, StoredReplica } from '@mostajs/replicator-persistence'
import type { ProjectState, ReplicaEntry } from './project-state.js'

/** The tree file of a topology: replicas with their URIs as given, routing, rules, epochs. */
export function treeOf(projects: Iterable<ProjectState>, rules: ReplicationRuleConfig[]): ReplicatorTree {
  const tree: ReplicatorTree = { replicas: {}, routing: {}, rules, epochs: {} }
  for (const state of projects) {
    tree.replicas[state.name] = [...state.replicas.values()].map(storedReplica)
    tree.routing[state.name] = state.router.strategy
    tree.epochs[state.name] = state.epoch
  }
  return tree
}

function storedReplica(entry: ReplicaEntry): StoredReplica {
  const { pool, schemaStrategy, replication, ...rest } = entry.config
  return {
    ...rest,
    ...(pool ? { pool } : {}),
    ...(schemaStrategy ? { schemaStrategy } : {}),
    ...(replication ? { replication } : {}),
    ...(entry.fenced ? { fenced: true } : {}),
  }
}

/** Replicas of a project in the order they reconnect: the master first. */
export function mastersFirst(replicas: StoredReplica[]): StoredReplica[] {
  const isMaster = (replica: StoredReplica) => Number(replica.role === 'master' && !replica.fenced)
  return [...replicas].sort((a, b) => isMaster(b) - isMaster(a))
}

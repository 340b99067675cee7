export { openChangeStream, type OpenChangeStreamOptions } from './change-stream.js'
export {
  bidirectionalConfigs,
  replicationRuleSchema,
  RULE_DEFAULTS,
  validateRule,
  withRuleDefaults,
  type ReplicationRuleConfig,
  type ResolvedRuleConfig,
  type RunnerConfig,
} from './rule-config.js'
export { DEAD_LETTERS_COLLECTION, OFFSETS_COLLECTION, TOMBSTONES_COLLECTION } from './runner/internal-tables.js'
export { DEFAULT_LEASE_MS, type LeaseHolder, type LeaseOptions } from './runner/rule-lease.js'
export { RuleRunner } from './runner/rule-runner.js'
export type { CollectionStats, RuleCounters, RuleObserver, SyncStats } from './runner/sync-stats.js'
export { managedFeedName, RuleSet, type RuleEndpoint, type RuleProgress, type RuleSetHost } from './rule-set.js'
export type { StreamState } from './stream-loop.js'

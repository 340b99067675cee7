import type { Dialect, Position } from '@mostajs/replicator-core'
import type { RunnerConfig, WithRuleDefaults } from '../rule-config.js'
import type { RuleLease } from './rule-lease.js'
import type { CollectionStats, RuleCounters, RuleObserver } from './sync-stats.js'

/** What the parts of a rule runner share: the rule, both databases, and its counters. */
export interface RuleContext {
  /** The rule with its defaults filled in (batchSize, conflictResolution, timestampColumn, …). */
  readonly config: WithRuleDefaults<RunnerConfig>
  readonly source: Dialect
  readonly target: Dialect
  readonly observer: RuleObserver
  readonly stats: RuleCounters
  readonly perCollection: Map<string, CollectionStats>
  /** The rule's lease on the target: every offset write is a compare-and-set on its epoch. */
  readonly lease: RuleLease
  /**
   * Tables without a primary key, by the log position their copy was read at (`readExact`):
   * their changes up to it are in the copy already and are not applied again.
   */
  readonly cuts: Map<string, Position>
}

import { z } from 'zod'
import { listProblems, problemsAt, ReplicatorError } from '@mostajs/replicator-core'

const RULE_NAME = /^[A-Za-z0-9_.-]{1,48}$/

/**
 * A replication rule, as users write it and as the tree file stores it: the single source of
 * its type (`ReplicationRuleConfig`), of its validation (`validateRule`, the tree file,
 * `mostajs-replicator validate`) and of its defaults (`withRuleDefaults`).
 */
export const replicationRuleSchema = z
  .object({
    /** Names the capture on the source (slot, publication, triggers): 1 to 48 of `A-Za-z0-9_.-`. */
    name: z
      .string()
      .regex(RULE_NAME, "names are 1 to 48 letters, digits, '_', '.' or '-' (they name slots and triggers)"),
    /** Source project (its master is read). */
    source: z.string().min(1, 'needs a source project'),
    /** Target project (its master is written). */
    target: z.string().min(1, 'needs a target project'),
    /**
     * `cdc`: snapshot, then log-based streaming. `snapshot`: each sync makes the target a full
     * mirror (creates, updates, and deletes target rows absent from the source); no capture.
     * `bidirectional`: `cdc` both ways, last writer wins on `timestampColumn`.
     */
    mode: z.enum(['cdc', 'snapshot', 'bidirectional'], {
      error:
        "unknown mode; use 'cdc' (snapshot then streaming), 'snapshot' (full mirror on each sync) or 'bidirectional'",
    }),
    /** Collections to carry; `['*']` follows the source catalogue. */
    collections: z.array(z.string().min(1)).min(1, "needs collections (names, or ['*'])"),
    /**
     * How a source change meets an existing target row: `source-wins` (default) applies it;
     * `target-wins` never overwrites or deletes an existing target row (new rows still arrive);
     * `timestamp` applies an upsert only when its `timestampColumn` is not older than the
     * target's (last writer wins; deletes apply). Skipped changes are counted in `skipped`.
     */
    conflictResolution: z
      .enum(['source-wins', 'target-wins', 'timestamp'], {
        error: "unknown conflictResolution; use 'source-wins', 'target-wins' or 'timestamp'",
      })
      .optional(),
    /** Column compared by `timestamp` resolution (default `updatedAt`). */
    timestampColumn: z.string().min(1).optional(),
    /** Rules that are not enabled are kept but not streamed by the service (default true). */
    enabled: z.boolean().optional(),
    /** Most events applied per target transaction (default 1000). */
    batchSize: z.number().int().positive('must be a positive integer').optional(),
  })
  .strict()
  .superRefine((rule, context) => {
    if (rule.source === rule.target)
      context.addIssue({ code: 'custom', path: ['target'], message: 'source and target are the same project' })
    if (rule.mode !== 'bidirectional') return
    if (rule.name.length > 46)
      context.addIssue({
        code: 'custom',
        path: ['name'],
        message: 'names of bidirectional rules are at most 46 characters',
      })
    if (rule.conflictResolution !== 'timestamp')
      context.addIssue({
        code: 'custom',
        path: ['conflictResolution'],
        message:
          "a bidirectional rule needs conflictResolution: 'timestamp' (with a timestampColumn, default updatedAt): with writes on both sides, only a rule both directions agree on converges",
      })
  })

/** A replication rule: stream every change of `collections` from a source master to a target master. */
export type ReplicationRuleConfig = z.input<typeof replicationRuleSchema>

/** What a rule that leaves them out gets: the one place these defaults are written. */
export const RULE_DEFAULTS = {
  enabled: true,
  conflictResolution: 'source-wins',
  /** Column compared by `timestamp` conflict resolution and by bidirectional rules. */
  timestampColumn: 'updatedAt',
  /** Rows per target transaction, and per snapshot page. */
  batchSize: 1000,
} as const satisfies Partial<ReplicationRuleConfig>

/** What filling in the defaults adds to a rule: each of them set. */
export type WithRuleDefaults<T extends ReplicationRuleConfig> = T &
  Required<Pick<ReplicationRuleConfig, keyof typeof RULE_DEFAULTS>>

/** A rule with its defaults filled in (what `listRules()` returns). */
export type ResolvedRuleConfig = WithRuleDefaults<ReplicationRuleConfig>

/** Settings the manager gives a runner besides the user's rule. */
export interface RunnerConfig extends ReplicationRuleConfig {
  /** Internal collections carried besides `collections` (the heartbeat table, for managed replicas). */
  alsoCarry?: string[]
  /**
   * Bidirectional rules: drop changes whose row the target already holds as is, so a change
   * applied by one direction and captured again ends there instead of bouncing.
   */
  suppressNoOps?: boolean
  /** The reverse direction of a bidirectional rule: start streaming without a snapshot. */
  skipSnapshot?: boolean
  /**
   * Bidirectional rules, both directions: the rule whose deletes are remembered as tombstones
   * on both sides, so a delete and an update of one row made on the two sides at once resolve
   * by time like two updates do.
   */
  tombstones?: string
  /**
   * Identity of the source server (`project/replica` of the master). When it differs from the
   * one stored with the offset, the source master changed (a promotion): log positions of the
   * old server mean nothing on the new one, so the runner re-seeds the target by a mirror pass
   * (copy, and delete rows the source no longer has) and streams from the new server's
   * capture. A bidirectional rule merges instead (newer rows win, nothing is deleted).
   */
  origin?: string
}

/** Throws CONFIG_INVALID naming every problem of a malformed rule with its JSON path. */
export function validateRule(config: ReplicationRuleConfig): void {
  const result = replicationRuleSchema.safeParse(config)
  if (result.success) return
  const name = typeof config?.name === 'string' ? config.name : String(config?.name)
  const problems = problemsAt(result.error.issues)
  throw new ReplicatorError('CONFIG_INVALID', `Rule "${name}": ${listProblems(problems)}.`, {
    details: { rule: name, problems },
  })
}

/** The rule (a runner's settings kept) with every default filled in. */
export function withRuleDefaults<T extends ReplicationRuleConfig>(config: T): WithRuleDefaults<T> {
  return {
    ...config,
    enabled: config.enabled ?? RULE_DEFAULTS.enabled,
    conflictResolution: config.conflictResolution ?? RULE_DEFAULTS.conflictResolution,
    timestampColumn: config.timestampColumn ?? RULE_DEFAULTS.timestampColumn,
    batchSize: config.batchSize ?? RULE_DEFAULTS.batchSize,
  }
}

/**
 * The two directions of a bidirectional rule: source → target (with the snapshot) and
 * target → source (streaming only). Both drop changes the other side already holds, so a row
 * applied by one direction and captured again stops there.
 */
export function bidirectionalConfigs(config: ReplicationRuleConfig): [RunnerConfig, RunnerConfig] {
  return [
    { ...config, suppressNoOps: true, tombstones: config.name },
    {
      ...config,
      name: `${config.name}.r`,
      source: config.target,
      target: config.source,
      suppressNoOps: true,
      skipSnapshot: true,
      tombstones: config.name,
    },
  ]
}

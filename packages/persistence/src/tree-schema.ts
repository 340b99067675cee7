import { z } from 'zod'
import { hasMaskedSecret, jsonPath, problemsAt, ReplicatorError, type PathProblem } from '@mostajs/replicator-core'
import { replicationRuleSchema, type ReplicationRuleConfig } from '@mostajs/replicator-cdc'
import { READ_ROUTING_STRATEGIES } from '@mostajs/replicator-routing'

/** Version of the tree file this release writes. */
export const TREE_VERSION = 2

/**
 * The forms of tree file this release reads:
 * - `2`: replicas and rules keyed by name (what `saveToFile` writes; the original library's
 *   readers, such as its monitor, understand it);
 * - `1`: replicas and rules as arrays (this project's earlier releases);
 * - `'0.2'`: the original `@mostajs/replicator` 0.2 file: keyed, no `version`.
 */
export type TreeFormat = 2 | 1 | '0.2'

const MASKED_SECRET_MESSAGE =
  'holds a masked password (***): a file saved with its secrets hidden cannot connect. Replace the stars with an environment reference, such as ${DB_PASSWORD}, and set that variable.'

/**
 * A replica as `addReplica` takes it (the original README's shape, plus `replication` and
 * `weight`) and the tree file stores it (plus `fenced`). The one definition: the TypeScript
 * types are inferred from it.
 */
export const replicaConfigSchema = z
  .object({
    name: z.string().min(1),
    role: z.enum(['master', 'slave']),
    /** `postgres`, `mysql`, `mariadb`, `sqlite` (its package must be imported). */
    dialect: z.string().min(1),
    /** Connection URI; may hold `${ENV}` references, resolved when connecting. */
    uri: z
      .string()
      .min(1)
      .refine((uri) => !hasMaskedSecret(uri), MASKED_SECRET_MESSAGE),
    pool: z
      .object({
        min: z.number().int().min(0).optional(),
        max: z.number().int().min(1).optional(),
        idleTimeoutMs: z.number().int().min(0).optional(),
      })
      .strict()
      .optional(),
    /** What to do with the schemas given to addReplica on this replica: `create` / `update` create missing tables. */
    schemaStrategy: z.enum(['none', 'validate', 'create', 'update']).optional(),
    /** Largest measured lag (ms) at which this slave serves reads or may be promoted. */
    lagTolerance: z.number().min(0).optional(),
    /** `native` (default for slaves): the database replicates itself. `managed`: the replicator streams into it. */
    replication: z.enum(['native', 'managed']).optional(),
    /** Share of reads under `weighted` routing (default 1). */
    weight: z.number().min(0).optional(),
    /** Written by the manager: a former master that must not come back as one (set by the promotion that replaced it). */
    fenced: z.boolean().optional(),
  })
  .strict()

/** A replica as stored in the tree file (URIs may hold `${ENV}` references). */
export type StoredReplica = z.infer<typeof replicaConfigSchema>
/** A replication rule as stored in the tree file. */
export type StoredRule = ReplicationRuleConfig

/**
 * A tree as the manager loads and saves it, whatever form its file had: every project's
 * replicas (URIs as written, `${ENV}` references kept), read routing, rules and promotion epochs.
 */
export interface ReplicatorTree {
  replicas: Record<string, StoredReplica[]>
  routing: Record<string, (typeof READ_ROUTING_STRATEGIES)[number]>
  rules: StoredRule[]
  /** Promotion counter per project: a fenced master of an older epoch never comes back as master. */
  epochs: Record<string, number>
}

/** A replica in a keyed file: its name is its key. */
export type KeyedReplica = Omit<StoredReplica, 'name'>
/** A rule in a keyed file: its name is its key. */
export type KeyedRule = Omit<StoredRule, 'name'>

/**
 * The file `saveToFile` writes (version 2): replicas by project then by name, rules by name,
 * as the original library wrote them, plus this project's `version`, `epochs`, `fenced`,
 * `weight`, `replication`.
 */
export interface TreeFile {
  version: typeof TREE_VERSION
  replicas: Record<string, Record<string, KeyedReplica>>
  routing: Record<string, (typeof READ_ROUTING_STRATEGIES)[number]>
  rules: Record<string, KeyedRule>
  epochs: Record<string, number>
}

/** One problem found in a tree file, with the JSON path where it is. */
export type TreeProblem = PathProblem

/** What the envelope of every form shares; replicas and rules are checked per form below. */
const envelopeSchema = z
  .object({
    version: z
      .union([z.literal(1), z.literal(2)], {
        error: `unknown version; this release reads versions 1 and ${TREE_VERSION}, and files without a version (@mostajs/replicator 0.2)`,
      })
      .optional(),
    replicas: z.record(z.string().min(1), z.unknown()),
    routing: z.record(z.string().min(1), z.enum(READ_ROUTING_STRATEGIES)).default({}),
    rules: z.unknown().optional(),
    epochs: z.record(z.string().min(1), z.number().int().min(0)).default({}),
  })
  .strict()

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/** The form of a parsed tree file, from its `version` (none: the original 0.2 file). */
export function treeFormatOf(value: unknown): TreeFormat {
  const version = isObject(value) ? value.version : undefined
  return version === 1 ? 1 : version === undefined ? '0.2' : 2
}

/**
 * Validates a parsed tree file of any form this release reads (see `TreeFormat`) and returns
 * it as the manager uses it; CONFIG_INVALID listing every problem with its JSON path in the
 * file as written. Rule defaults are filled in by the manager, as for `addReplicationRule`.
 */
export function parseTree(value: unknown, source = 'tree'): ReplicatorTree {
  const envelope = envelopeSchema.safeParse(value)
  const problems: TreeProblem[] = envelope.success ? [] : problemsAt(envelope.error.issues)
  if (!isObject(value)) throw invalid(source, problems)
  const format = treeFormatOf(value)
  const tree: ReplicatorTree = {
    replicas: {},
    routing: envelope.data?.routing ?? {},
    rules: [],
    epochs: envelope.data?.epochs ?? {},
  }
  // the envelope's problems do not hide the replicas' and rules' ones
  for (const [project, replicas] of Object.entries(isObject(value.replicas) ? value.replicas : {})) {
    const entries = entriesOf(replicas, format, ['replicas', project], problems)
    tree.replicas[project] = entries.flatMap(({ path, value: replica }) =>
      checked(replicaConfigSchema, replica, path, problems),
    )
    checkProject(project, tree.replicas[project], entries, problems)
  }
  const rules = entriesOf(value.rules ?? (format === 1 ? [] : {}), format, ['rules'], problems)
  const ruleNames = new Set<string>()
  for (const { path, value: rule } of rules) {
    const [valid] = checked(replicationRuleSchema, rule, path, problems)
    if (!valid) continue
    if (ruleNames.has(valid.name))
      problems.push({ path: jsonPath([...path, 'name']), message: `duplicate rule name "${valid.name}"` })
    ruleNames.add(valid.name)
    tree.rules.push(valid)
  }
  if (problems.length) throw invalid(source, problems)
  return tree
}

type Entry = { path: PropertyKey[]; value: unknown }

/**
 * The elements of a replicas or rules collection with their JSON paths: an array (version 1)
 * or an object keyed by name (version 2, 0.2), whose key becomes the element's `name`.
 */
function entriesOf(collection: unknown, format: TreeFormat, path: PropertyKey[], problems: TreeProblem[]): Entry[] {
  if (format === 1) {
    if (Array.isArray(collection)) return collection.map((value, index) => ({ path: [...path, index], value }))
    problems.push({ path: jsonPath(path), message: 'a version 1 tree lists these as an array' })
    return []
  }
  if (!isObject(collection)) {
    const hint = Array.isArray(collection) ? ' (an array is the version 1 form: add "version": 1)' : ''
    problems.push({ path: jsonPath(path), message: `expected an object keyed by name${hint}` })
    return []
  }
  const entries: Entry[] = []
  for (const [name, value] of Object.entries(collection)) {
    const at = [...path, name]
    if (!isObject(value)) {
      problems.push({ path: jsonPath(at), message: 'expected an object' })
      continue
    }
    if (value.name !== undefined && value.name !== name) {
      problems.push({
        path: jsonPath([...at, 'name']),
        message: `"${String(value.name)}" differs from its key "${name}"`,
      })
      continue
    }
    entries.push({ path: at, value: { ...value, name } })
  }
  return entries
}

/** The value when it passes `schema` (as a one-element list), else its problems at `path`. */
function checked<T>(schema: z.ZodType<T>, value: unknown, path: PropertyKey[], problems: TreeProblem[]): T[] {
  const result = schema.safeParse(value)
  if (result.success) return [result.data]
  problems.push(
    ...problemsAt(result.error.issues.map((issue) => ({ ...issue, path: [...path, ...fromKey(issue.path, path)] }))),
  )
  return []
}

/** In a keyed file a bad name is its key: the problem is reported at the key, not at `.name`. */
function fromKey(issuePath: ReadonlyArray<PropertyKey>, path: PropertyKey[]): PropertyKey[] {
  const keyed = typeof path[path.length - 1] === 'string'
  return keyed && issuePath.length === 1 && issuePath[0] === 'name' ? [] : [...issuePath]
}

/** Duplicate names (arrays only) and more than one master in a project. */
function checkProject(project: string, replicas: StoredReplica[], entries: Entry[], problems: TreeProblem[]): void {
  const names = new Set<string>()
  entries.forEach(({ path, value }) => {
    const name = isObject(value) ? value.name : undefined
    if (typeof name === 'string' && names.has(name))
      problems.push({ path: jsonPath([...path, 'name']), message: `duplicate replica name "${name}"` })
    if (typeof name === 'string') names.add(name)
  })
  const masters = replicas.filter((replica) => replica.role === 'master' && !replica.fenced)
  if (masters.length > 1)
    problems.push({
      path: jsonPath(['replicas', project]),
      message: `${masters.length} masters (${masters.map((m) => m.name).join(', ')}); a project has one`,
    })
}

/**
 * The file form of a tree (version 2: keyed by name). CONFIG_INVALID when two replicas of a
 * project, or two rules, share a name (a keyed file cannot hold both).
 */
export function treeFileOf(tree: ReplicatorTree): TreeFile {
  const problems: TreeProblem[] = []
  const keyed = <T extends { name: string }>(items: T[], path: PropertyKey[]) => {
    const byName: Record<string, Omit<T, 'name'>> = {}
    items.forEach(({ name, ...rest }, index) => {
      if (Object.hasOwn(byName, name))
        problems.push({ path: jsonPath([...path, index, 'name']), message: `duplicate name "${name}"` })
      byName[name] = rest
    })
    return byName
  }
  const file: TreeFile = {
    version: TREE_VERSION,
    replicas: Object.fromEntries(
      Object.entries(tree.replicas ?? {}).map(([project, replicas]) => [
        project,
        keyed(replicas, ['replicas', project]),
      ]),
    ),
    routing: tree.routing ?? {},
    rules: keyed(tree.rules ?? [], ['rules']),
    epochs: tree.epochs ?? {},
  }
  if (problems.length) throw invalid('The tree to save', problems)
  return file
}

function invalid(source: string, problems: TreeProblem[]): ReplicatorError {
  const listed = problems.map((problem) => `  ${problem.path}: ${problem.message}`).join('\n')
  return new ReplicatorError(
    'CONFIG_INVALID',
    `${source} is not a valid replicator tree (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n${listed}`,
    { details: { source, problems } },
  )
}

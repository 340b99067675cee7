import { copyFile, mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { z } from 'zod'
import { jsonPath, listProblems, problemsAt, ReplicatorError, type PathProblem } from '@mostajs/replicator-core'
import { replicationRuleSchema, type ReplicationRuleConfig } from '@mostajs/replicator-cdc'

/** Current version of the tree file format. */
export const TREE_VERSION = 1

/** A replica as `addReplica` takes it and the tree file stores it (URIs may hold `${ENV}` references). */
export const replicaConfigSchema = z
  .object({
    name: z.string().min(1),
    role: z.enum(['master', 'slave']),
    dialect: z.string().min(1),
    uri: z.string().min(1),
    pool: z
      .object({
        min: z.number().int().min(0).optional(),
        max: z.number().int().min(1).optional(),
        idleTimeoutMs: z.number().int().min(0).optional(),
      })
      .strict()
      .optional(),
    schemaStrategy: z.enum(['none', 'validate', 'create', 'update']).optional(),
    lagTolerance: z.number().min(0).optional(),
    replication: z.enum(['native', 'managed']).optional(),
    weight: z.number().min(0).optional(),
    fenced: z.boolean().optional(),
  })
  .strict()

/** The tree file: projects' replicas, their read routing, replication rules. */
export const treeSchema = z
  .object({
    version: z.literal(TREE_VERSION),
    replicas: z.record(z.string().min(1), z.array(replicaConfigSchema)),
    routing: z.record(z.string().min(1), z.enum(['round-robin', 'least-lag', 'random', 'weighted'])).default({}),
    rules: z.array(replicationRuleSchema).default([]),
    /** Promotion counter per project: a fenced master of an older epoch never comes back as master. */
    epochs: z.record(z.string().min(1), z.number().int().min(0)).default({}),
  })
  .strict()

/** A replica as stored in the tree file (URIs may hold `${ENV}` references). */
export type StoredReplica = z.infer<typeof replicaConfigSchema>
/** A replication rule as stored in the tree file. */
export type StoredRule = ReplicationRuleConfig
/** The whole tree file. */
export type ReplicatorTree = z.infer<typeof treeSchema>

/** One problem found in a tree file, with the JSON path where it is. */
export type TreeProblem = PathProblem

/** Validates a parsed tree; CONFIG_INVALID listing every problem with its JSON path. */
export function parseTree(value: unknown, source = 'tree'): ReplicatorTree {
  const result = treeSchema.safeParse(value)
  if (!result.success) {
    throw invalid(source, problemsAt(result.error.issues))
  }
  const problems: TreeProblem[] = []
  for (const [project, replicas] of Object.entries(result.data.replicas)) {
    const names = new Set<string>()
    replicas.forEach((replica, index) => {
      if (names.has(replica.name))
        problems.push({
          path: jsonPath(['replicas', project, index, 'name']),
          message: `duplicate replica name "${replica.name}"`,
        })
      names.add(replica.name)
    })
    const masters = replicas.filter((replica) => replica.role === 'master' && !replica.fenced)
    if (masters.length > 1)
      problems.push({
        path: jsonPath(['replicas', project]),
        message: `${masters.length} masters (${masters.map((m) => m.name).join(', ')}); a project has one`,
      })
  }
  const ruleNames = new Set<string>()
  result.data.rules.forEach((rule, index) => {
    if (ruleNames.has(rule.name))
      problems.push({ path: jsonPath(['rules', index, 'name']), message: `duplicate rule name "${rule.name}"` })
    ruleNames.add(rule.name)
  })
  if (problems.length) throw invalid(source, problems)
  return result.data
}

function invalid(source: string, problems: TreeProblem[]): ReplicatorError {
  const listed = problems.map((problem) => `  ${problem.path}: ${problem.message}`).join('\n')
  return new ReplicatorError(
    'CONFIG_INVALID',
    `${source} is not a valid replicator tree (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n${listed}`,
    { details: { source, problems } },
  )
}

const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g

/**
 * Replaces `${NAME}` references (anywhere in the string) with environment values;
 * CONFIG_INVALID naming the variable and the JSON path when one is missing.
 */
export function resolveEnvReferences(text: string, path: string, env: NodeJS.ProcessEnv = process.env): string {
  return text.replace(ENV_REFERENCE, (_match, name: string) => {
    const value = env[name]
    if (value === undefined) {
      throw new ReplicatorError(
        'CONFIG_INVALID',
        `${path} refers to \${${name}}, but the environment variable ${name} is not set.`,
        { details: { path, variable: name } },
      )
    }
    return value
  })
}

/** Reads and validates a tree file; CONFIG_INVALID for a missing file, bad JSON or a bad tree. */
export async function readTreeFile(path: string): Promise<ReplicatorTree> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new ReplicatorError('CONFIG_INVALID', `Cannot read tree file ${path}: ${(error as Error).message}`, {
      cause: error,
      details: { path },
    })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new ReplicatorError('CONFIG_INVALID', `Tree file ${path} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
      details: { path },
    })
  }
  return parseTree(parsed, `Tree file ${path}`)
}

/**
 * Writes a tree file atomically: a temp file beside it (mode 0600), fsync, rename over the
 * old one; the previous version is kept as `<path>.bak`. Readers never see a partial file.
 */
export async function writeTreeFile(path: string, tree: ReplicatorTree): Promise<void> {
  const valid = parseTree(tree, 'The tree to save')
  await mkdir(dirname(path), { recursive: true, mode: 0o700 }) // `.mostajs/` on a first save
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`)
  const handle = await open(temp, 'w', 0o600)
  try {
    await handle.writeFile(`${JSON.stringify(valid, null, 2)}\n`)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await copyFile(path, `${path}.bak`).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
    })
    await rename(temp, path)
  } catch (error) {
    await rm(temp, { force: true })
    throw error
  }
}

/** Checks the shape of a replica config; CONFIG_INVALID naming each problem with its JSON path. */
export function validateReplicaConfig(config: unknown, where: string): StoredReplica {
  const result = replicaConfigSchema.safeParse(config)
  if (result.success) return result.data
  const problems = problemsAt(result.error.issues)
  throw new ReplicatorError('CONFIG_INVALID', `${where}: ${listProblems(problems)}.`, { details: { problems } })
}

import { constants, copyFile, mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { listProblems, problemsAt, ReplicatorError } from '@mostajs/replicator-core'
import {
  parseTree,
  replicaConfigSchema,
  TREE_VERSION,
  treeFileOf,
  treeFormatOf,
  type ReplicatorTree,
  type StoredReplica,
  type TreeFormat,
} from './tree-schema.js'

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

/** Reads and validates a tree file of any form (see `TreeFormat`); CONFIG_INVALID for a missing file, bad JSON or a bad tree. */
export async function readTreeFile(path: string): Promise<ReplicatorTree> {
  return (await loadTreeFile(path)).tree
}

/** A tree file read and validated, with the form it was written in. */
export interface LoadedTreeFile {
  tree: ReplicatorTree
  format: TreeFormat
}

/** `readTreeFile`, also telling the form of the file (an older one is rewritten by the next save). */
export async function loadTreeFile(path: string): Promise<LoadedTreeFile> {
  const parsed = await readJson(path)
  return { tree: parseTree(parsed, `Tree file ${path}`), format: treeFormatOf(parsed) }
}

async function readJson(path: string): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new ReplicatorError('CONFIG_INVALID', `Cannot read tree file ${path}: ${(error as Error).message}`, {
      cause: error,
      details: { path },
    })
  }
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    throw new ReplicatorError('CONFIG_INVALID', `Tree file ${path} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
      details: { path },
    })
  }
}

/** What a save replaced. */
export interface TreeWriteResult {
  /** The form of the file the save replaced (null: there was none, or it was not a tree). */
  previousFormat: TreeFormat | null
  /**
   * Where the replaced file was kept when it had an older form (`<path>.v0.2.bak`,
   * `<path>.v1.bak`): a save never rewrites an older file without keeping it. Null otherwise.
   */
  formatBackup: string | null
}

/**
 * Writes a tree file atomically, in the current form (version 2, keyed by name): a temp file
 * beside it (mode 0600), fsync, rename over the old one; the previous version is kept as
 * `<path>.bak`. Readers never see a partial file. A replaced file of an older form is also
 * kept as `<path>.v<form>.bak` (never overwritten), and the result says so.
 */
export async function writeTreeFile(path: string, tree: ReplicatorTree): Promise<TreeWriteResult> {
  const file = treeFileOf(tree)
  parseTree(file, 'The tree to save') // what is written must load again
  await mkdir(dirname(path), { recursive: true, mode: 0o700 }) // `.mostajs/` on a first save
  const previousFormat = await formatOfFileAt(path)
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`)
  const handle = await open(temp, 'w', 0o600)
  try {
    await handle.writeFile(`${JSON.stringify(file, null, 2)}\n`)
    await handle.sync()
  } finally {
    await handle.close()
  }
  let formatBackup: string | null = null
  try {
    if (previousFormat !== null && previousFormat !== TREE_VERSION)
      formatBackup = await keepOlderForm(path, previousFormat)
    await copyFile(path, `${path}.bak`).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
    })
    await rename(temp, path)
  } catch (error) {
    await rm(temp, { force: true })
    throw error
  }
  return { previousFormat, formatBackup }
}

/** The form of the tree file at `path`; null when there is none or it is not a tree. */
async function formatOfFileAt(path: string): Promise<TreeFormat | null> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as unknown
    return typeof parsed === 'object' && parsed !== null && 'replicas' in parsed ? treeFormatOf(parsed) : null
  } catch {
    return null
  }
}

/** Copies an older-form file aside under a name no later save overwrites. */
async function keepOlderForm(path: string, format: TreeFormat): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const backup = `${path}.v${format}${attempt ? `.${attempt}` : ''}.bak`
    try {
      await copyFile(path, backup, constants.COPYFILE_EXCL)
      return backup
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  }
}

/** Checks the shape of a replica config; CONFIG_INVALID naming each problem with its JSON path. */
export function validateReplicaConfig(config: unknown, where: string): StoredReplica {
  const result = replicaConfigSchema.safeParse(config)
  if (result.success) return result.data
  const problems = problemsAt(result.error.issues)
  throw new ReplicatorError('CONFIG_INVALID', `${where}: ${listProblems(problems)}.`, { details: { problems } })
}

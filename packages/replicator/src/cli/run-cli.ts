import { readFile } from 'node:fs/promises'
import { Command, CommanderError } from 'commander'
import { maskSecretsInText, ReplicatorError } from '@mostajs/replicator-core'
import {
  loadTreeFile,
  parseTree,
  TREE_VERSION,
  treeFormatOf,
  writeTreeFile,
  type TreeFormat,
} from '@mostajs/replicator-persistence'
import { ReplicationManager } from '../replication-manager.js'
import { DEFAULT_TREE_FILE, runReplicatorService, serviceOptionsFromEnv } from '../service/replicator-service.js'
import { scaffoldReplicatorService } from '../service/scaffold.js'

/** Exit codes: 0 success; 1 the command failed (bad tree, unreachable, refused); 2 usage error. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const

interface Output {
  out(text: string): void
  err(text: string): void
}

const DEFAULT_TREE = () => serviceOptionsFromEnv().tree ?? DEFAULT_TREE_FILE

function table(rows: Array<Record<string, unknown>>): string {
  if (!rows.length) return '(none)'
  const columns = Object.keys(rows[0]!)
  const cells = rows.map((row) =>
    columns.map((column) => (row[column] === null || row[column] === undefined ? '-' : String(row[column]))),
  )
  const widths = columns.map((column, index) => Math.max(column.length, ...cells.map((line) => line[index]!.length)))
  const line = (values: string[]) =>
    values
      .map((value, index) => value.padEnd(widths[index]!))
      .join('  ')
      .trimEnd()
  return [line(columns), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n')
}

/**
 * A snapshot progress bar on stderr: redrawn in place on a terminal, one line per tenth
 * otherwise (logs, CI).
 */
function progressBar(write: (text: string) => void, interactive: boolean) {
  const shown = new Map<string, number>()
  return (info: { collection: string; done: number; total: number }) => {
    const fraction = info.total > 0 ? Math.min(1, info.done / info.total) : 1
    const tenth = Math.floor(fraction * 10)
    if (!interactive && (shown.get(info.collection) ?? -1) >= tenth) return
    shown.set(info.collection, tenth)
    const width = 30
    const filled = Math.round(fraction * width)
    const line = `${info.collection.padEnd(20)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%  ${info.done}/${info.total} rows`
    write(interactive ? `\r${line}${fraction >= 1 ? '\n' : ''}` : `${line}\n`)
  }
}

/** The rules as the running service reports them (`/api/rules`), or null when it does not answer. */
async function serviceRules(base: string): Promise<Array<{
  name: string
  streaming: boolean
  lastError: string | null
  stats: { lagMs: number; recordsSynced: number; errors: number }
}> | null> {
  const token = process.env.REPLICATOR_HTTP_TOKEN
  try {
    const response = await fetch(`${base.replace(/\/$/, '')}/api/rules`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(2000),
    })
    return response.ok ? ((await response.json()) as never) : null
  } catch {
    return null
  }
}

/** Loads a tree into a manager, lets the monitors measure for `waitMs`, and hands it to `fn`. */
async function withManager<T>(
  tree: string,
  waitMs: number,
  fn: (manager: ReplicationManager) => Promise<T>,
  output?: Output,
): Promise<T> {
  const manager = new ReplicationManager(null, {
    heartbeatIntervalMs: 100,
    healthCheckIntervalMs: 250,
    failureThreshold: 1,
    connectTimeoutMs: 3000,
  })
  manager.on('error', () => undefined) // reported through the status instead
  manager.on('tree.migrated', (event) => output?.err(`${migratedLine(event)}\n`))
  try {
    await manager.loadFromFile(tree)
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs))
    return await fn(manager)
  } finally {
    await manager.disconnectAll()
  }
}

const FORM_NAMES: Record<string, string> = { '0.2': 'the @mostajs/replicator 0.2 form', '1': 'version 1' }

function migratedLine(event: { path: string; from: TreeFormat; backup: string }): string {
  return `${event.path} rewritten from ${FORM_NAMES[String(event.from)]} to version ${TREE_VERSION}; the old file is kept at ${event.backup}`
}

/**
 * Runs the `mostajs-replicator` command line with `argv` (without `node` and the script) and
 * resolves with its exit code. Output goes through `output` (stdout/stderr by default).
 */
export async function runCli(
  argv: string[],
  output: Output = { out: (text) => process.stdout.write(text), err: (text) => process.stderr.write(text) },
): Promise<number> {
  let exitCode: number = EXIT.ok
  const program = new Command()
    .name('mostajs-replicator')
    .description('Run several databases as one: replication service, status, tree validation, rule sync, promotion.')
    .exitOverride()
    .configureOutput({ writeOut: output.out, writeErr: output.err })

  program
    .command('scaffold')
    .description('write services/replicator.mjs, a thin file that runs the replicator service')
    .option('--dir <dir>', 'project directory', '.')
    .option('--path <file>', 'file to write, relative to --dir', 'services/replicator.mjs')
    .option('--force', 'overwrite an existing file')
    .option('--dry-run', 'print the file instead of writing it')
    .action(async (options: { dir: string; path: string; force?: boolean; dryRun?: boolean }) => {
      const result = await scaffoldReplicatorService({
        dir: options.dir,
        path: options.path,
        force: options.force === true,
        dryRun: options.dryRun === true,
      })
      output.out(result.written ? `wrote ${result.path}\nrun it with: node ${options.path}\n` : result.content)
    })

  program
    .command('validate')
    .description('check a tree file; prints every problem with its JSON path (exit 1 when invalid)')
    .argument('[tree]', 'tree file', DEFAULT_TREE())
    .option('--json', 'print the result as JSON')
    .action(async (tree: string, options: { json?: boolean }) => {
      try {
        const raw = JSON.parse(await readFile(tree, 'utf8')) as unknown
        const parsed = parseTree(raw, `Tree file ${tree}`)
        const summary = {
          valid: true,
          tree,
          format: treeFormatOf(raw),
          projects: Object.keys(parsed.replicas).length,
          replicas: Object.values(parsed.replicas).flat().length,
          rules: parsed.rules.length,
        }
        const older =
          summary.format === TREE_VERSION
            ? ''
            : ` (${FORM_NAMES[String(summary.format)]}; \`mostajs-replicator migrate-tree ${tree}\` rewrites it in version ${TREE_VERSION})`
        output.out(
          options.json
            ? `${JSON.stringify(summary)}\n`
            : `${tree} is valid: ${summary.replicas} replicas in ${summary.projects} projects, ${summary.rules} rules${older}\n`,
        )
      } catch (error) {
        const problems =
          ReplicatorError.isInstance(error) && Array.isArray(error.details.problems)
            ? (error.details.problems as Array<{ path: string; message: string }>)
            : [
                {
                  path: '$',
                  message: error instanceof SyntaxError ? `not valid JSON: ${error.message}` : (error as Error).message,
                },
              ]
        output.out(
          options.json
            ? `${JSON.stringify({ valid: false, tree, problems })}\n`
            : `${tree} is not valid:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}\n`,
        )
        exitCode = EXIT.failed
      }
    })

  program
    .command('migrate-tree')
    .description(
      `rewrite a tree file of an older form (@mostajs/replicator 0.2, version 1) in version ${TREE_VERSION}; the old file is kept as <tree>.v<form>.bak`,
    )
    .argument('<tree>', 'tree file')
    .option('--json', 'print the result as JSON')
    .action(async (tree: string, options: { json?: boolean }) => {
      const { tree: parsed, format } = await loadTreeFile(tree) // a bad file: CONFIG_INVALID, nothing written
      const counts = {
        replicas: Object.values(parsed.replicas).flat().length,
        rules: parsed.rules.length,
      }
      const written = format === TREE_VERSION ? null : await writeTreeFile(tree, parsed)
      const result = { tree, from: format, to: TREE_VERSION, ...counts, backup: written?.formatBackup ?? null }
      output.out(
        options.json
          ? `${JSON.stringify(result)}\n`
          : written
            ? `${migratedLine({ path: tree, from: format, backup: result.backup! })} (${counts.replicas} replicas, ${counts.rules} rules)\n`
            : `${tree} is already version ${TREE_VERSION}; nothing to do\n`,
      )
    })

  program
    .command('status')
    .description(
      'replicas (role, state, measured lag, tolerance, health, masked URI) and rules (position applied, when, dead letters)',
    )
    .option('--tree <file>', 'tree file', DEFAULT_TREE())
    .option('--wait <ms>', 'measure for this long before printing', '1000')
    .option('--json', 'print JSON')
    .option(
      '--service <url>',
      'status endpoint of the running service, for its rule counters and lag (default http://127.0.0.1:$REPLICATOR_HTTP_PORT when set)',
    )
    .action(async (options: { tree: string; wait: string; json?: boolean; service?: string }) => {
      const service =
        options.service ??
        (process.env.REPLICATOR_HTTP_PORT ? `http://127.0.0.1:${process.env.REPLICATOR_HTTP_PORT}` : undefined)
      const running = service ? await serviceRules(service) : null
      await withManager(options.tree, Number(options.wait), async (manager) => {
        const replicas = manager.listProjects().flatMap((project) => manager.getReplicaStatus(project))
        // A separate process: what the rules did is read from their targets (offsets, dead
        // letters), and their counters and lag from the running service when it answers.
        const rules = await Promise.all(
          manager.listRules().map(async (rule) => {
            const stored = rule as Record<string, unknown>
            const progress = await manager
              .getRuleProgress(rule.name)
              .catch((error: Error) => ({ error: maskSecretsInText(error.message) }))
            const live = running?.find((candidate) => candidate.name === rule.name)
            return {
              ...stored,
              name: rule.name,
              mode: stored.mode,
              source: stored.source,
              target: stored.target,
              progress,
              ...(live ? { stats: live.stats, streaming: live.streaming, lastError: live.lastError } : {}),
            }
          }),
        )
        if (replicas.some((replica) => !replica.healthy)) exitCode = EXIT.failed
        if (options.json) {
          output.out(`${JSON.stringify({ replicas, rules })}\n`)
          return
        }
        output.out(
          `${table(replicas.map((r) => ({ project: r.project, replica: r.name, role: r.role, state: r.status, 'lag ms': r.lag, tolerance: r.lagTolerance, healthy: r.healthy, uri: r.uri })))}\n\n`,
        )
        output.out(
          `${table(
            rules.map((r) =>
              'error' in r.progress
                ? {
                    rule: r.name,
                    mode: r.mode,
                    source: r.source,
                    target: r.target,
                    position: `unreadable: ${r.progress.error}`,
                    applied: null,
                    'dead letters': null,
                  }
                : {
                    rule: r.name,
                    mode: r.mode,
                    source: r.source,
                    target: r.target,
                    position: r.progress.position ? JSON.stringify(r.progress.position.value) : null,
                    applied: r.progress.appliedAt?.toISOString() ?? null,
                    'dead letters': r.progress.deadLetters,
                    ...(r.stats
                      ? { 'lag ms': r.stats.lagMs, synced: r.stats.recordsSynced, errors: r.stats.errors }
                      : {}),
                  },
            ),
          )}\n`,
        )
        if (service && !running)
          output.out(
            `(no service answered at ${service}: rule counters and lag are only known to the running service)\n`,
          )
      })
    })

  program
    .command('sync')
    .description('snapshot (first time) then apply every pending change of a rule; prints its stats')
    .argument('<rule>', 'rule name')
    .option('--tree <file>', 'tree file', DEFAULT_TREE())
    .option('--json', 'print JSON')
    .option('--no-progress', 'no snapshot progress bar on stderr')
    .action(async (rule: string, options: { tree: string; json?: boolean; progress: boolean }) => {
      await withManager(options.tree, 0, async (manager) => {
        if (options.progress) manager.on('rule.progress', progressBar(output.err, process.stderr.isTTY === true))
        const stats = await manager.sync(rule)
        output.out(
          options.json
            ? `${JSON.stringify(stats)}\n`
            : `${rule}: ${stats.recordsSynced} records (${stats.created} created, ${stats.updated} updated, ${stats.deleted} deleted, ${stats.deadLettered} dead-lettered) in ${stats.duration} ms\n`,
        )
      })
    })

  program
    .command('promote')
    .description('promote a slave to master (refused when it lags, unless --force)')
    .argument('<project>')
    .argument('<replica>')
    .option('--tree <file>', 'tree file (saved back after the promotion)', DEFAULT_TREE())
    .option('--force', 'promote even when lagging; the result says what may be lost')
    .option('--json', 'print JSON')
    .action(async (project: string, replica: string, options: { tree: string; force?: boolean; json?: boolean }) => {
      await withManager(
        options.tree,
        1000,
        async (manager) => {
          const result = await manager.promoteToMaster(project, replica, { force: options.force === true })
          await manager.saveToFile(options.tree)
          output.out(
            options.json
              ? `${JSON.stringify(result)}\n`
              : `${project}/${replica} is now the master (epoch ${result.epoch}); ${result.previousMaster ?? 'no previous master'} fenced${result.possibleDataLoss ? `; may be lost: ${result.possibleDataLoss}` : ''}\n`,
          )
        },
        output,
      )
    })

  program
    .command('run')
    .description(
      'the long-running service: heartbeats, health checks, streaming of every enabled rule and managed replica',
    )
    .option('--tree <file>', 'tree file', DEFAULT_TREE())
    .option(
      '--http-port <port>',
      'serve /health, /metrics and /api/* on this port (default REPLICATOR_HTTP_PORT; the token comes from REPLICATOR_HTTP_TOKEN)',
    )
    .option(
      '--http-host <host>',
      'interface of the status endpoint (default 127.0.0.1; another one needs REPLICATOR_HTTP_TOKEN)',
    )
    .action(async (options: { tree: string; httpPort?: string; httpHost?: string }) => {
      // Listen before starting, so a signal during start-up still ends in a clean stop.
      const signaled = new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve())
        process.once('SIGINT', () => resolve())
      })
      // the flags win over the environment (REPLICATOR_HTTP_*), which serviceOptionsFromEnv maps
      const fromEnv = serviceOptionsFromEnv()
      const envHttp = fromEnv.http || undefined
      const port = options.httpPort ?? (envHttp ? String(envHttp.port) : undefined)
      if (port !== undefined && !/^\d+$/.test(port))
        throw new ReplicatorError('CONFIG_INVALID', `--http-port ${JSON.stringify(port)} is not a port number.`)
      const http =
        port === undefined
          ? false
          : { ...envHttp, port: Number(port), ...(options.httpHost ? { host: options.httpHost } : {}) }
      const service = await runReplicatorService({ ...fromEnv, tree: options.tree, http })
      await signaled
      await service.stop() // the batches in flight finish and their offsets are stored
    })

  try {
    await program.parseAsync(argv, { from: 'user' })
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage
    output.err(
      `${maskSecretsInText(ReplicatorError.isInstance(error) ? `${error.code}: ${error.message}` : (error as Error).message)}\n`,
    )
    return EXIT.failed
  }
  return exitCode
}

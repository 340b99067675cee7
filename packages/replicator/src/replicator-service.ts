import { ReplicationManager, type ReplicationManagerOptions } from './replication-manager.js'
import { startStatusServer, type StatusServer, type StatusServerOptions } from './status-server.js'

/** Options of {@link runReplicatorService}. */
export interface ReplicatorServiceOptions {
  /** Tree file to load (default `REPLICATOR_TREE` or `.mostajs/replicator-tree.json`). */
  tree?: string
  /** Streaming period of the rules (default `REPLICATOR_INTERVAL_MS` or 200 ms). */
  intervalMs?: number
  /** No progress lines on stdout (default `REPLICATOR_QUIET=1`). */
  quiet?: boolean
  /**
   * Status endpoint (/health, /metrics, /api/…). Default: on when `REPLICATOR_HTTP_PORT` is
   * set (with `REPLICATOR_HTTP_HOST`, `REPLICATOR_HTTP_TOKEN`), else off. `false` turns it off.
   */
  http?: StatusServerOptions | false
  manager?: ReplicationManagerOptions
}

/** The status endpoint options the environment asks for, or undefined. */
function httpFromEnv(): StatusServerOptions | undefined {
  const port = process.env.REPLICATOR_HTTP_PORT
  if (port === undefined || port === '') return undefined
  return {
    port: Number(port),
    ...(process.env.REPLICATOR_HTTP_HOST ? { host: process.env.REPLICATOR_HTTP_HOST } : {}),
    ...(process.env.REPLICATOR_HTTP_TOKEN ? { token: process.env.REPLICATOR_HTTP_TOKEN } : {}),
  }
}

/** A running replicator service. */
export interface ReplicatorService {
  manager: ReplicationManager
  /** The status endpoint, when it runs. */
  status: StatusServer | null
  /** Stops streaming after the batches in flight, then closes every connection. */
  stop(): Promise<void>
}

/**
 * The long-running replication service: loads the tree (reconnecting every replica and
 * resolving `${ENV}` references), measures lag and health, streams every enabled rule and
 * feeds managed replicas. Offsets live in the targets, so a restart resumes where it stopped.
 *
 * @example
 * const service = await runReplicatorService({ tree: '.mostajs/replicator-tree.json' })
 * process.once('SIGTERM', () => service.stop().then(() => process.exit(0)))
 */
export async function runReplicatorService(options: ReplicatorServiceOptions = {}): Promise<ReplicatorService> {
  const tree = options.tree ?? process.env.REPLICATOR_TREE ?? '.mostajs/replicator-tree.json'
  const quiet = options.quiet ?? process.env.REPLICATOR_QUIET === '1'
  const intervalMs = options.intervalMs ?? (Number(process.env.REPLICATOR_INTERVAL_MS) || 200)
  const say = (line: string) => {
    if (!quiet) process.stdout.write(`[replicator] ${line}\n`)
  }
  const manager = new ReplicationManager(null, options.manager)
  manager.on('error', (error: Error) => say(`error: ${error.message}`))
  manager.on('replica.state', (event: { project: string; name: string; state: string; lag: number | null }) =>
    say(`${event.project}/${event.name} is ${event.state}${event.lag === null ? '' : ` (lag ${event.lag} ms)`}`),
  )
  await manager.loadFromFile(tree)
  for (const rule of manager.listRules()) {
    if (rule.enabled === false) continue
    await manager.startRule(rule.name, { intervalMs })
    say(`streaming rule ${rule.name}`)
  }
  const http = options.http === false ? undefined : (options.http ?? httpFromEnv())
  let status: StatusServer | null = null
  if (http) {
    try {
      status = await startStatusServer(manager, http)
    } catch (error) {
      await manager.disconnectAll()
      throw error
    }
    say(`status endpoint on ${status.url} (/health, /metrics, /api/replicas, /api/rules, /api/routing)`)
  }
  // The manager's timers do not hold the process (a library must not); the service does, until stopped.
  const keepAlive = setInterval(() => undefined, 60_000)
  say(
    `running: ${manager.size} replicas in ${manager.listProjects().length} projects, ${manager.listRules().length} rules (tree ${tree})`,
  )
  let stopping: Promise<void> | undefined
  return {
    manager,
    status,
    stop() {
      stopping ??= (async () => {
        clearInterval(keepAlive)
        await status?.close()
        for (const rule of manager.listRules()) await manager.stopRule(rule.name).catch(() => undefined)
        await manager.disconnectAll()
        say('stopped')
      })()
      return stopping
    },
  }
}

import { ReplicatorError, type TopologyStore } from '@mostajs/replicator-core'
import type * as EtcdStorePackage from '@mostajs/replicator-store-etcd'
import type { ReplicatorLogger } from '../manager-logger.js'
import type { ReplicationManagerOptions } from '../options.js'
import { ReplicationManager } from '../replication-manager.js'
import { startStatusServer, type StatusServer, type StatusServerOptions } from './status-server.js'

/** Options of {@link runReplicatorService}. */
export interface ReplicatorServiceOptions {
  /** Tree file to load (default `.mostajs/replicator-tree.json`). */
  tree?: string
  /** Streaming period of the rules (default 200 ms). */
  intervalMs?: number
  /** No progress lines on stdout (default false). */
  quiet?: boolean
  /**
   * Log through this logger (pino's `(fields, message)` methods) instead of progress lines on
   * stdout; it is also the manager's logger (see `ReplicationManagerOptions.logger`).
   */
  logger?: ReplicatorLogger
  /** Status endpoint (/health, /metrics, /api/…); off when not given or `false`. */
  http?: StatusServerOptions | false
  manager?: ReplicationManagerOptions
  /**
   * etcd client URLs: the service shares its topology with the other processes through
   * `@mostajs/replicator-store-etcd` (installed beside this package), as `manager.topologyStore`.
   */
  etcdEndpoints?: string[]
}

/** An etcd topology store, loaded only when asked for (the package and its client are optional). */
async function etcdStore(endpoints: string[]): Promise<TopologyStore> {
  const name = '@mostajs/replicator-store-etcd'
  try {
    const { EtcdTopologyStore } = (await import(name)) as typeof EtcdStorePackage
    return new EtcdTopologyStore({ endpoints })
  } catch (error) {
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `etcd endpoints were given, but ${name} cannot be loaded (${(error as Error).message}); install it beside @mostajs/replicator.`,
    )
  }
}

/** The tree file the service and the command use unless told otherwise. */
export const DEFAULT_TREE_FILE = '.mostajs/replicator-tree.json'

/** A positive number from an environment variable, or undefined. */
function positive(value: string | undefined): number | undefined {
  const number = Number(value)
  return value && Number.isFinite(number) && number > 0 ? number : undefined
}

/**
 * The service's options from `REPLICATOR_*` environment variables (the only place they are
 * read; see the README's table). Unset variables leave the defaults.
 */
export function serviceOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): ReplicatorServiceOptions {
  const capture = {
    ...(positive(env.REPLICATOR_SPILL_CHANGES) ? { spillAfterChanges: positive(env.REPLICATOR_SPILL_CHANGES) } : {}),
    ...(env.REPLICATOR_SPILL_DIR ? { spillDirectory: env.REPLICATOR_SPILL_DIR } : {}),
    ...(positive(env.REPLICATOR_BINLOG_BUFFER_EVENTS)
      ? { binlogBufferEvents: positive(env.REPLICATOR_BINLOG_BUFFER_EVENTS) }
      : {}),
  }
  const manager = {
    ...(Object.keys(capture).length ? { capture } : {}),
    ...(env.REPLICATOR_AUTO_FAILOVER === '1' ? { autoFailover: true } : {}),
  }
  const port = env.REPLICATOR_HTTP_PORT
  return {
    ...(env.REPLICATOR_TREE ? { tree: env.REPLICATOR_TREE } : {}),
    ...(positive(env.REPLICATOR_INTERVAL_MS) ? { intervalMs: positive(env.REPLICATOR_INTERVAL_MS) } : {}),
    ...(env.REPLICATOR_QUIET === '1' ? { quiet: true } : {}),
    ...(port
      ? {
          http: {
            port: Number(port),
            ...(env.REPLICATOR_HTTP_HOST ? { host: env.REPLICATOR_HTTP_HOST } : {}),
            ...(env.REPLICATOR_HTTP_TOKEN ? { token: env.REPLICATOR_HTTP_TOKEN } : {}),
          },
        }
      : {}),
    ...(env.REPLICATOR_ETCD_ENDPOINTS
      ? { etcdEndpoints: env.REPLICATOR_ETCD_ENDPOINTS.split(',').map((endpoint) => endpoint.trim()) }
      : {}),
    ...(Object.keys(manager).length ? { manager } : {}),
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
  const tree = options.tree ?? DEFAULT_TREE_FILE
  const quiet = options.quiet ?? false
  const intervalMs = options.intervalMs ?? 200
  const { logger } = options
  const say = (line: string) => {
    if (logger) logger.info({ service: 'replicator' }, line)
    else if (!quiet) process.stdout.write(`[replicator] ${line}\n`)
  }
  const store = options.etcdEndpoints?.length ? await etcdStore(options.etcdEndpoints) : undefined
  const manager = new ReplicationManager(null, {
    ...options.manager,
    ...(store ? { topologyStore: store } : {}),
    ...(logger ? { logger } : {}),
  })
  if (!logger) {
    // a logger hears these from the manager itself, with their fields
    manager.on('error', (error) => say(`error: ${(error as Error).message}`))
    manager.on('replica.state', (event) =>
      say(`${event.project}/${event.name} is ${event.state}${event.lag === null ? '' : ` (lag ${event.lag} ms)`}`),
    )
    manager.on('topology.followed', (event) =>
      say(`${event.project}: following ${event.master} (epoch ${event.epoch}), promoted by another process`),
    )
    manager.on('failover.automatic', (result) =>
      say(`${result.project}: master down, ${result.promoted} promoted (epoch ${result.epoch})`),
    )
  }
  try {
    await manager.loadFromFile(tree)
  } catch (error) {
    await manager.disconnectAll()
    await store?.close()
    throw error
  }
  for (const rule of manager.listRules()) {
    if (rule.enabled === false) continue
    await manager.startRule(rule.name, { intervalMs })
    say(`streaming rule ${rule.name}`)
  }
  const http = options.http === false ? undefined : options.http
  let status: StatusServer | null = null
  if (http) {
    try {
      status = await startStatusServer(manager, http)
    } catch (error) {
      await manager.disconnectAll()
      await store?.close()
      throw error
    }
    say(`status page on ${status.url}/ (and /health, /metrics, /api/replicas, /api/rules, /api/routing, /api/stream)`)
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
        await store?.close()
        say('stopped')
      })()
      return stopping
    },
  }
}

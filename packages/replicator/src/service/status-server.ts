import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { maskSecretsInText, ReplicatorError } from '@mostajs/replicator-core'
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard-page.js'
import { createReplicatorMetrics, type ReplicatorMetricsOptions } from './metrics.js'
import type { ReplicationManager } from '../replication-manager.js'
import type { ReplicaStatus } from '../types.js'

/** Options of {@link startStatusServer}. */
export interface StatusServerOptions {
  /** TCP port (default 9470; 0 picks a free one). */
  port?: number
  /** Interface to bind (default `127.0.0.1`: loopback only). Another host needs a `token`. */
  host?: string
  /**
   * When set, every request needs `Authorization: Bearer <token>`, or `?token=<token>` in its
   * URL (what a browser opening the page and its event stream can send).
   */
  token?: string
  /** How often `/api/stream` sends the status, in ms (default 1000). */
  streamIntervalMs?: number
  /** Where `/metrics` comes from: a registry of its own by default, or the application's. */
  metrics?: ReplicatorMetricsOptions
  /** A streaming loop failing this many times in a row makes /health answer 503 (default 3). */
  unhealthyAfterFailures?: number
}

/** A running status endpoint. */
export interface StatusServer {
  /** Base URL, e.g. `http://127.0.0.1:9470`. */
  url: string
  port: number
  close(): Promise<void>
}

/** What /health answers: `ok` (200) or `down` (503) with the reasons; warnings never fail it. */
export interface HealthReport {
  status: 'ok' | 'down'
  reasons: string[]
  warnings: string[]
  checkedAt: string
}

export const DEFAULT_STATUS_PORT = 9470
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

/**
 * Health of a manager: down when a project has no healthy master, or when a streaming loop
 * (rule or managed replica feed) failed `unhealthyAfterFailures` times in a row. Slaves that
 * are down or lagging are warnings: reads go elsewhere, nothing is lost.
 */
export function healthOf(manager: ReplicationManager, unhealthyAfterFailures = 3): HealthReport {
  const reasons: string[] = []
  const warnings: string[] = []
  for (const project of manager.listProjects()) {
    const replicas = manager.getReplicaStatus(project)
    const master = replicas.find((replica) => replica.role === 'master' && replica.status !== 'fenced')
    if (!master) reasons.push(`project ${project}: no master`)
    else if (!master.healthy)
      reasons.push(
        `project ${project}: master ${master.name} is ${master.status}${master.lastError ? ` (${master.lastError})` : ''}`,
      )
    for (const replica of replicas) {
      if (replica.role !== 'slave' || replica.status === 'healthy') continue
      warnings.push(
        `project ${project}: slave ${replica.name} is ${replica.status}${replica.lag === null ? '' : ` (lag ${replica.lag} ms, tolerance ${replica.lagTolerance} ms)`}`,
      )
    }
  }
  for (const stream of manager.listStreams()) {
    if (stream.consecutiveFailures >= unhealthyAfterFailures)
      reasons.push(
        `${stream.kind === 'rule' ? 'rule' : 'managed feed'} ${stream.name}: ${stream.consecutiveFailures} failed attempts in a row (${stream.lastError ?? 'unknown error'})`,
      )
    else if (stream.consecutiveFailures > 0)
      warnings.push(`${stream.name}: retrying after ${stream.lastError ?? 'an error'}`)
  }
  for (const retention of manager.getRetentionWarnings())
    warnings.push(`capture ${retention.capture} on ${retention.source}: ${retention.reason}`)
  return { status: reasons.length ? 'down' : 'ok', reasons, warnings, checkedAt: new Date().toISOString() }
}

/**
 * The rules as a monitor reads them: our counters plus `inserted/updated/deleted/failed`
 * aliases, and `lastStats` (the shape of monitors written for the ORM's replicator).
 */
export function rulesView(manager: ReplicationManager) {
  return manager.listRules().map((rule) => {
    const stats = manager.getSyncStats(rule.name)
    const stream = manager.getStreamState(rule.name)
    const { inserted, updated, deleted, failed, durationMs } = stats
    return {
      ...rule,
      streaming: stream !== null,
      consecutiveFailures: stream?.consecutiveFailures ?? 0,
      lastError: stream?.lastError ?? null,
      stats,
      lastStats: { inserted, updated, deleted, failed, durationMs },
    }
  })
}

/** Every replica, by project (`{ [project]: replicas[] }`), as the dashboard and monitors read them. */
export function replicasByProject(manager: ReplicationManager): Record<string, ReplicaStatus[]> {
  return Object.fromEntries(manager.listProjects().map((project) => [project, manager.getReplicaStatus(project)]))
}

/** What `/api/stream` sends at each tick. */
function statusSnapshot(manager: ReplicationManager, unhealthyAfterFailures?: number) {
  return {
    at: new Date().toISOString(),
    health: healthOf(manager, unhealthyAfterFailures),
    replicas: replicasByProject(manager),
    rules: rulesView(manager),
    routing: routingView(manager),
  }
}

function routingView(manager: ReplicationManager) {
  return manager.listProjects().map((project) => manager.getRoutingStatus(project))
}

function jsonText(body: unknown): string {
  return JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))
}

function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest()
  return timingSafeEqual(digest(given), digest(expected))
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = jsonText(body)
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  response.end(text)
}

/**
 * Serves a manager's status over HTTP: a live page at `/` (fed by the server-sent events of
 * `/api/stream`), `/health` (200 or 503 with reasons), `/metrics` (Prometheus text),
 * `/api/replicas`, `/api/rules`, `/api/routing` (JSON). Read-only; bound to loopback unless
 * told otherwise, and then only with a token.
 *
 * @example
 * const status = await startStatusServer(manager, { port: 9470 })
 * // curl http://127.0.0.1:9470/health
 */
export async function startStatusServer(
  manager: ReplicationManager,
  options: StatusServerOptions = {},
): Promise<StatusServer> {
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? DEFAULT_STATUS_PORT
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `Status server port ${JSON.stringify(options.port)} is not a TCP port (0-65535).`,
    )
  if (!LOOPBACK.has(host) && !options.token) {
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `The status server would listen on ${host} without a token: set a token (REPLICATOR_HTTP_TOKEN) or bind it to 127.0.0.1.`,
    )
  }
  const metrics = createReplicatorMetrics(manager, options.metrics)
  const streamIntervalMs = options.streamIntervalMs ?? 1000
  const routes: Record<string, (response: ServerResponse, url: URL) => Promise<void> | void> = {
    '/': (response) => {
      response.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': DASHBOARD_CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      })
      response.end(DASHBOARD_HTML)
    },
    '/api/stream': (response) => {
      response.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      })
      const send = () =>
        response.write(`event: status\ndata: ${jsonText(statusSnapshot(manager, options.unhealthyAfterFailures))}\n\n`)
      response.write('retry: 2000\n\n')
      send()
      const timer = setInterval(send, streamIntervalMs)
      response.on('close', () => clearInterval(timer))
    },
    '/health': (response) => {
      const report = healthOf(manager, options.unhealthyAfterFailures)
      sendJson(response, report.status === 'ok' ? 200 : 503, report)
    },
    '/metrics': async (response) => {
      const text = await metrics.text()
      response.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' })
      response.end(text)
    },
    // `?by=project`: `{ [project]: replicas[] }`, the shape monitors of the ORM's replicator read
    '/api/replicas': (response, url) =>
      sendJson(
        response,
        200,
        url.searchParams.get('by') === 'project'
          ? replicasByProject(manager)
          : Object.values(replicasByProject(manager)).flat(),
      ),
    '/api/rules': (response) => sendJson(response, 200, rulesView(manager)),
    '/api/routing': (response) => sendJson(response, 200, routingView(manager)),
  }

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    void (async () => {
      const url = new URL(request.url ?? '/', 'http://status')
      const given =
        request.headers.authorization ??
        (url.searchParams.has('token') ? `Bearer ${url.searchParams.get('token')}` : '')
      if (options.token && !sameSecret(String(given), `Bearer ${options.token}`)) {
        response.setHeader('www-authenticate', 'Bearer')
        return sendJson(response, 401, { error: 'a bearer token is required' })
      }
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.setHeader('allow', 'GET, HEAD')
        return sendJson(response, 405, { error: `${request.method} is not allowed; the status endpoint is read-only` })
      }
      const route = routes[url.pathname]
      if (!route) return sendJson(response, 404, { error: `no route ${url.pathname}`, routes: Object.keys(routes) })
      await route(response, url)
    })().catch((error: unknown) => {
      if (!response.headersSent) sendJson(response, 500, { error: maskSecretsInText((error as Error).message) })
      else response.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new ReplicatorError(
          'CONFIG_INVALID',
          `The status server cannot listen on ${host}:${port}: ${error.code === 'EADDRINUSE' ? 'the port is in use' : error.message}.`,
          { cause: error },
        ),
      )
    })
    server.listen(port, host, () => resolve())
  })
  const bound = (server.address() as AddressInfo).port
  const urlHost = host.includes(':') ? `[${host}]` : host
  return {
    url: `http://${urlHost}:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        metrics.detach()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

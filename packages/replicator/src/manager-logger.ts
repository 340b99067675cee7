import type { EventEmitter } from 'node:events'
import { maskSecretsInText, ReplicatorError } from '@mostajs/replicator-core'
import type { ReplicationManagerEvents } from './events.js'

/**
 * What the manager logs through: pino's signature (`logger.warn({ fields }, 'message')`),
 * which bunyan, a pino child logger and most structured loggers share. The libraries write
 * nothing to stdout or stderr themselves.
 */
export interface ReplicatorLogger {
  info(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}

/** An error as log fields: its code and masked message (never the raw driver error, which may quote a URI). */
function errorFields(error: unknown): Record<string, unknown> {
  if (ReplicatorError.isInstance(error)) return { code: error.code, error: error.message }
  return { error: maskSecretsInText(error instanceof Error ? error.message : String(error)) }
}

/** Logs what the manager does in the background: topology changes, promotions, re-seeds, retention, errors. */
export function logManagerEvents(manager: EventEmitter<ReplicationManagerEvents>, logger: ReplicatorLogger): void {
  manager.on('replica.added', (event) => logger.info({ ...event }, 'replica added'))
  manager.on('replica.removed', (event) => logger.info({ ...event }, 'replica removed'))
  manager.on('replica.state', (event) =>
    (event.state === 'healthy' ? logger.info : logger.warn).call(logger, { ...event }, `replica ${event.state}`),
  )
  manager.on('replica.promoted', (result) => logger.warn({ ...result }, 'replica promoted'))
  manager.on('failover.automatic', (result) => logger.warn({ ...result }, 'automatic failover'))
  manager.on('topology.followed', (event) => logger.warn({ ...event }, 'master change followed'))
  manager.on('replica.fenced', (event) => logger.warn({ ...event }, 'former master fenced'))
  manager.on('rule.reseeded', (event) => logger.warn({ ...event }, 'rule re-seeded: its capture lost its position'))
  manager.on('capture.retention', (warning) => logger.warn({ ...warning }, 'capture retains too much log'))
  manager.on('tree.migrated', (event) =>
    logger.warn(
      { ...event },
      `tree file rewritten from the ${event.from} form; the old file is kept at ${event.backup}`,
    ),
  )
  manager.on('error', (error) => logger.error(errorFields(error), 'background error'))
}

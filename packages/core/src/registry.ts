import { ReplicatorError } from './errors.js'
import type { Dialect, DialectConfig } from './dialect.js'

/** Builds an unconnected dialect from its config. */
export type DialectFactory = (config: DialectConfig) => Dialect

interface RegistryEntry {
  factory: DialectFactory
  canonical: string
}

// Shared through globalThis so two installed copies of core see the same registrations.
const REGISTRY_KEY = Symbol.for('@mostajs/replicator.dialect-registry')
const registry: Map<string, RegistryEntry> = ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] ??=
  new Map()) as Map<string, RegistryEntry>

/** The package that provides each known dialect name, for the UNKNOWN_DIALECT hint. */
export const DIALECT_PACKAGES: Record<string, string> = {
  postgres: '@mostajs/replicator-dialect-postgres',
  postgresql: '@mostajs/replicator-dialect-postgres',
  mysql: '@mostajs/replicator-dialect-mysql',
  mariadb: '@mostajs/replicator-dialect-mysql',
  sqlite: '@mostajs/replicator-dialect-sqlite',
}

/**
 * Registers a dialect under a name and optional aliases. Dialect packages call this when imported.
 *
 * @example registerDialect('postgres', (config) => new PostgresDialect(config), ['postgresql'])
 */
export function registerDialect(name: string, factory: DialectFactory, aliases: string[] = []): void {
  for (const key of [name, ...aliases]) registry.set(key.toLowerCase(), { factory, canonical: name })
}

/** Names (and aliases) of the registered dialects. */
export function registeredDialects(): string[] {
  return [...registry.keys()].sort()
}

/**
 * Creates an unconnected dialect; call `connect()` next.
 * Throws UNKNOWN_DIALECT (naming the package to install) when no such dialect is registered.
 */
export function createDialect(config: DialectConfig): Dialect {
  if (!config || typeof config !== 'object')
    throw new ReplicatorError('CONFIG_INVALID', 'createDialect needs a config object: { dialect, uri }.')
  const name = String(config.dialect ?? '').toLowerCase()
  const entry = registry.get(name)
  if (!entry) {
    const known = registeredDialects()
    const hint = DIALECT_PACKAGES[name]
      ? `Install and import "${DIALECT_PACKAGES[name]}" to register it.`
      : `Known dialects: postgres, postgresql, mysql, mariadb, sqlite.`
    throw new ReplicatorError(
      'UNKNOWN_DIALECT',
      `Unknown dialect "${String(config.dialect)}". Registered: ${known.length ? known.join(', ') : '(none)'}. ${hint}`,
      { details: { dialect: config.dialect, registered: known } },
    )
  }
  if (typeof config.uri !== 'string' || config.uri.trim() === '') {
    throw new ReplicatorError('CONFIG_INVALID', `Dialect "${name}" needs a non-empty "uri".`, {
      details: { dialect: name },
    })
  }
  return entry.factory({ ...config, dialect: name })
}

/** Creates a dialect and connects it. */
export async function connectDialect(config: DialectConfig): Promise<Dialect> {
  const dialect = createDialect(config)
  await dialect.connect()
  return dialect
}

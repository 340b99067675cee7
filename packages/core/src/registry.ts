import { ReplicatorError } from './errors.js'
import type { Dialect, DialectConfig } from './dialect.js'

/** Builds an unconnected dialect from its config. */
export type DialectFactory = (config: DialectConfig) => Dialect

/** The SQL a dialect speaks, as query builders (Kysely, Drizzle) compile it. */
export type SqlFamily = 'postgres' | 'mysql' | 'sqlite'

/**
 * Everything the other packages know of a database kind, in one place: its names, the package
 * that registers it, the SQL it speaks, which kinds it natively replicates with, and what its
 * native replication can do. A dialect package registers its descriptor when imported; code
 * that needs such a fact reads the descriptor instead of comparing dialect names.
 *
 * @example
 * registerDialect({
 *   name: 'postgres', aliases: ['postgresql'], label: 'PostgreSQL', packageName: '@mostajs/replicator-dialect-postgres',
 *   sqlFamily: 'postgres', replicationFamily: 'postgres', oldMasterRejoins: false,
 *   create: (config) => new PostgresDialect(config),
 * })
 */
export interface DialectDescriptor {
  /** The canonical name (`postgres`): what `getReplicaStatus` and the tree file show. */
  name: string
  /** Other names accepted in configs (`postgresql`). */
  aliases?: readonly string[]
  /** The database's own name, for messages (`PostgreSQL`). */
  label: string
  /** The npm package that registers it. */
  packageName: string
  /** The SQL it speaks (query builders compile to it). */
  sqlFamily: SqlFamily
  /**
   * Kinds with the same replication family natively replicate each other (MySQL and MariaDB);
   * null: the database has no native replication, so its slaves are `managed`.
   */
  replicationFamily: string | null
  /**
   * After a switchover the old master can replicate from the new one and serve reads again
   * (MariaDB/MySQL with GTID); false: it stays fenced (PostgreSQL needs pg_rewind).
   */
  oldMasterRejoins: boolean
  /** Builds an unconnected dialect. */
  create: DialectFactory
}

interface RegistryEntry {
  descriptor: DialectDescriptor
  canonical: string
}

// Shared through globalThis so two installed copies of core see the same registrations.
const REGISTRY_KEY = Symbol.for('@mostajs/replicator.dialect-registry')
const registry: Map<string, RegistryEntry> = ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] ??=
  new Map()) as Map<string, RegistryEntry>

/**
 * The dialect packages of this project and the names each registers: the one list the
 * UNKNOWN_DIALECT hint and the command's loader read before any dialect is imported. A new
 * first-party dialect adds its line here; a third-party one needs none (it registers itself).
 */
export const DIALECT_PACKAGE_NAMES: Readonly<Record<string, readonly string[]>> = {
  '@mostajs/replicator-dialect-postgres': ['postgres', 'postgresql'],
  '@mostajs/replicator-dialect-mysql': ['mysql', 'mariadb'],
  '@mostajs/replicator-dialect-sqlite': ['sqlite', 'sqlite3'],
}

/** The package that provides each known dialect name, for the UNKNOWN_DIALECT hint. */
export const DIALECT_PACKAGES: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(DIALECT_PACKAGE_NAMES).flatMap(([packageName, names]) => names.map((name) => [name, packageName])),
)

/**
 * Registers a dialect: its descriptor, under its name and aliases. Dialect packages call this
 * when imported. The older form `registerDialect(name, factory, aliases)` registers a
 * dialect with a minimal descriptor (its own SQL family and replication family: its name).
 */
export function registerDialect(descriptor: DialectDescriptor): void
export function registerDialect(name: string, factory: DialectFactory, aliases?: string[]): void
export function registerDialect(
  given: DialectDescriptor | string,
  factory?: DialectFactory,
  aliases: string[] = [],
): void {
  const descriptor: DialectDescriptor =
    typeof given === 'string'
      ? {
          name: given,
          aliases,
          label: given,
          packageName: DIALECT_PACKAGES[given.toLowerCase()] ?? given,
          sqlFamily: given as SqlFamily,
          replicationFamily: given,
          oldMasterRejoins: false,
          create: factory!,
        }
      : given
  for (const key of [descriptor.name, ...(descriptor.aliases ?? [])])
    registry.set(key.toLowerCase(), { descriptor, canonical: descriptor.name })
}

/** Names (and aliases) of the registered dialects. */
export function registeredDialects(): string[] {
  return [...registry.keys()].sort()
}

/** The descriptor registered under a name or alias (case-insensitive); undefined when none is. */
export function dialectDescriptor(name: string): DialectDescriptor | undefined {
  return registry.get(String(name).toLowerCase())?.descriptor
}

/** Every registered descriptor, once each (aliases folded), by name. */
export function dialectDescriptors(): DialectDescriptor[] {
  const unique = new Set([...registry.values()].map((entry) => entry.descriptor))
  return [...unique].sort((a, b) => a.name.localeCompare(b.name))
}

/**
 * The replication family of a dialect name: kinds of one family replicate each other natively.
 * null: that kind has no native replication. An unregistered name is its own family.
 */
export function replicationFamilyOf(name: string): string | null {
  const descriptor = dialectDescriptor(name)
  return descriptor ? descriptor.replicationFamily : String(name).toLowerCase()
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
      : `Known dialects: ${Object.keys(DIALECT_PACKAGES).join(', ')} (import the package that registers one).`
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
  return entry.descriptor.create({ ...config, dialect: name })
}

/** Creates a dialect and connects it. */
export async function connectDialect(config: DialectConfig): Promise<Dialect> {
  const dialect = createDialect(config)
  await dialect.connect()
  return dialect
}

import { ReplicatorError, type CollectionDescription } from '@mostajs/replicator-core'
import { INTERNAL_PREFIX } from './internal-tables.js'
import type { RuleContext } from './rule-context.js'

/** What a rule can carry, judged before anything is created on either side. */
export interface Preflight {
  /** The collections to carry, as the source describes them. */
  carried: CollectionDescription[]
  /** Tables of the source catalogue (`['*']`) that cannot be carried, with the reason. */
  setAside: Map<string, string>
}

/** The collections to carry now: `['*']` follows the source catalogue, `alsoCarry` adds to it. */
export async function wantedCollections({ config, source }: RuleContext): Promise<string[]> {
  const followsCatalogue = config.collections.includes('*')
  const catalogue = followsCatalogue || config.alsoCarry?.length ? await source.listCollections() : []
  const named = followsCatalogue ? catalogue.filter((name) => !name.startsWith(INTERNAL_PREFIX)) : config.collections
  const extra = (config.alsoCarry ?? []).filter((name) => catalogue.includes(name) && !named.includes(name))
  return [...named, ...extra]
}

/**
 * Checks every wanted collection can be carried: each column of a portable type, a capture
 * that can read it, a primary key or a source and target able to carry a table without one,
 * the timestamp column that `timestamp` conflict resolution compares. A collection named by
 * the rule that fails is an error listing every problem; one only found in the catalogue
 * (`['*']`) is set aside with its reason, so the other tables flow.
 */
export async function preflight(context: RuleContext, wanted: string[]): Promise<Preflight> {
  const { config, source } = context
  const uncapturable = new Map(
    config.mode === 'snapshot' || !source.capture?.uncapturable
      ? []
      : (await source.capture.uncapturable(wanted)).map(({ collection, reason }) => [collection, reason] as const),
  )
  const followsCatalogue = config.collections.includes('*')
  const carried: CollectionDescription[] = []
  const setAside = new Map<string, string>()
  const problems: string[] = []
  for (const collection of wanted) {
    const description = await source.describeCollection(collection)
    const reasons = description.columns
      .filter((column) => column.type === 'unknown')
      .map((column) => `${collection}.${column.name} (${column.nativeType}) has no portable type`)
    if (uncapturable.has(collection)) reasons.push(uncapturable.get(collection)!)
    else if (!description.primaryKey.length) reasons.push(...keylessProblems(context, collection))
    if (reasons.length && followsCatalogue && !config.collections.includes(collection)) {
      setAside.set(collection, reasons.join('; '))
      continue
    }
    problems.push(...reasons)
    checkTimestampColumn(context, collection, description)
    carried.push(description)
  }
  if (problems.length) {
    throw new ReplicatorError(
      'TYPE_UNSUPPORTED',
      `Rule "${config.name}" cannot carry: ${problems.join('; ')}. Give these columns a portable type, a primary key, or leave the collection out.`,
      { details: { rule: config.name, problems } },
    )
  }
  return { carried, setAside }
}

/** Why a table without a primary key cannot be carried by this rule (none when it can). */
function keylessProblems({ config, source, target }: RuleContext, collection: string): string[] {
  if (config.mode === 'bidirectional' || config.conflictResolution === 'timestamp')
    return [`${collection} has no primary key, and conflicts between two writers are resolved per key`]
  if (config.mode === 'cdc' && !source.capture?.readExact)
    return [`${collection} has no primary key, and ${source.name} change capture cannot carry such tables`]
  if (!target.insertMany || !target.deleteOne || !target.replaceOne)
    return [`${collection} has no primary key, and ${target.name} cannot write such tables`]
  return []
}

/** `timestamp` conflict resolution needs the timestamp column in every carried table. */
function checkTimestampColumn({ config }: RuleContext, collection: string, description: CollectionDescription): void {
  if (config.conflictResolution !== 'timestamp' || collection.startsWith(INTERNAL_PREFIX)) return
  const { timestampColumn } = config
  if (description.columns.some((column) => column.name === timestampColumn && column.type === 'timestamp')) return
  throw new ReplicatorError(
    'CONFIG_INVALID',
    `Rule "${config.name}": conflictResolution 'timestamp' compares "${timestampColumn}", and collection "${collection}" has no timestamp column of that name. Set timestampColumn.`,
    { details: { rule: config.name, collection } },
  )
}

/** Comparison operators of the @mostajs/orm filter subset. */
export interface FieldOperators {
  $eq?: unknown
  $ne?: unknown
  $gt?: unknown
  $gte?: unknown
  $lt?: unknown
  $lte?: unknown
  $in?: unknown[]
  $nin?: unknown[]
}

/**
 * A filter in the @mostajs/orm subset: `{ field: value }` (equality, `null` → IS NULL),
 * `{ field: { $gt: 1, $lte: 9 } }`, `{ $or: [filter, …] }`, `{ $and: [filter, …] }`.
 *
 * @example
 * { status: 'active', age: { $gte: 18 }, $or: [{ country: 'FR' }, { vip: true }] }
 */
export type Filter = {
  $or?: Filter[]
  $and?: Filter[]
} & { [field: string]: unknown }

/** Sort/skip/limit options of `find`. `sort` values: 1 / 'asc' ascending, -1 / 'desc' descending. */
export interface FindOptions {
  sort?: Record<string, 1 | -1 | 'asc' | 'desc'>
  skip?: number
  limit?: number
  /** Columns to return (default: all). */
  select?: string[]
}

/** Changes of a filter-based `update`: a plain object is `$set`. */
export type UpdateChanges = Record<string, unknown> | { $set?: Record<string, unknown>; $inc?: Record<string, number> }

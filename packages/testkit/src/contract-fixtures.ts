import type { CollectionSchema, Row } from '@mostajs/replicator-core'

export const people: CollectionSchema = {
  name: 'people',
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'name', type: 'string', nullable: false },
    { name: 'age', type: 'integer' },
    { name: 'active', type: 'boolean' },
    { name: 'score', type: 'double' },
    { name: 'joined', type: 'timestamp' },
  ],
  primaryKey: ['id'],
}

export const SEED: Row[] = [
  { id: 1, name: 'ada', age: 36, active: true, score: 9.5, joined: new Date('2020-01-01T00:00:00.001Z') },
  { id: 2, name: 'bob', age: 17, active: false, score: 4.25, joined: new Date('2021-06-15T12:30:00.000Z') },
  { id: 3, name: 'cy', age: null, active: true, score: 7, joined: null },
  { id: 4, name: 'dee', age: 52, active: null, score: -1.5, joined: new Date('2019-03-03T03:03:03.333Z') },
  { id: 5, name: 'eve', age: 17, active: true, score: 0, joined: new Date('2022-12-31T23:59:59.999Z') },
  { id: 6, name: 'fay', age: 29, active: false, score: null, joined: new Date('2020-02-29T10:00:00.500Z') },
  { id: 7, name: 'gus', age: 41, active: true, score: 3.75, joined: new Date('2018-07-07T07:07:07.070Z') },
  { id: 8, name: 'hal', age: null, active: false, score: 8, joined: new Date('2023-01-01T00:00:00.000Z') },
]

export type Predicate = (row: Row) => boolean
export const ids = (rows: Row[]) => rows.map((row) => row.id).sort((a, b) => Number(a) - Number(b))
export const expectedIds = (predicate: Predicate) => SEED.filter(predicate).map((row) => row.id)

/** A table whose key the database generates. */
export function autoIncrementTable(dialect: string): string {
  if (dialect === 'postgres') return 'CREATE TABLE serials (id SERIAL PRIMARY KEY, label TEXT)'
  if (dialect === 'sqlite') return 'CREATE TABLE serials (id INTEGER PRIMARY KEY, label TEXT)'
  return 'CREATE TABLE serials (id INT AUTO_INCREMENT PRIMARY KEY, label TEXT)'
}

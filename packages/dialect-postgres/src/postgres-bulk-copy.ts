import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import type { BulkCopy } from '@mostajs/replicator-core'
import type { PostgresDialect } from './postgres-dialect.js'

/** `COPY … TO STDOUT` / `COPY … FROM STDIN` in the text format. */
export class PostgresBulkCopy implements BulkCopy {
  readonly format = 'postgres-copy-text'

  constructor(private readonly db: PostgresDialect) {}

  /** A session for COPY: ISO dates and exact floats, so the text means the same on the other side. */
  private async copySession(): Promise<pg.PoolClient> {
    const client = await this.db.connectClient()
    try {
      await client.query(
        "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'",
      )
    } catch (error) {
      client.release(true)
      throw this.db.toReplicatorError(error)
    }
    return client
  }

  async export(collection: string, columns: string[]): Promise<Readable> {
    const q = (identifier: string) => this.db.flavor.quoteIdentifier(identifier)
    const client = await this.copySession()
    let released = false
    const release = (broken: boolean) => {
      if (!released) {
        released = true
        client.release(broken)
      }
    }
    const stream = client.query(copyTo(`COPY ${q(collection)} (${columns.map(q).join(', ')}) TO STDOUT`))
    stream.once('end', () => release(false))
    stream.once('error', () => release(true))
    stream.once('close', () => release(!stream.readableEnded))
    return stream
  }

  async import(
    collection: string,
    columns: string[],
    data: Readable,
    onRows?: (rowsSoFar: number) => void,
  ): Promise<number> {
    const q = (identifier: string) => this.db.flavor.quoteIdentifier(identifier)
    const client = await this.copySession()
    let broken = false
    try {
      const sink = client.query(copyFrom(`COPY ${q(collection)} (${columns.map(q).join(', ')}) FROM STDIN`))
      let rows = 0
      let reported = 0
      // In the text format every row ends with a newline (newlines inside values are escaped).
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          for (let index = chunk.indexOf(10); index !== -1; index = chunk.indexOf(10, index + 1)) rows++
          if (onRows && rows - reported >= 10_000) {
            reported = rows
            onRows(rows)
          }
          callback(null, chunk)
        },
      })
      await pipeline(data, counter, sink)
      onRows?.(rows)
      return Number(sink.rowCount ?? rows)
    } catch (error) {
      broken = true
      throw this.db.toReplicatorError(error, collection)
    } finally {
      client.release(broken)
    }
  }
}

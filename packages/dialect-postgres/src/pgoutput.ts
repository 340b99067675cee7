import { NATIVE_NULL, NATIVE_UNSENT } from '@mostajs/replicator-core'

/**
 * A reader of PostgreSQL's `pgoutput` logical replication messages (protocol version 1), as
 * returned by `pg_logical_slot_peek_binary_changes`. Only what change capture needs.
 */

/** A column of a relation message. */
export interface RelationColumn {
  name: string
  typeOid: number
  isKey: boolean
}

/** A table as described by a relation message. */
export interface Relation {
  oid: number
  schema: string
  name: string
  /** d = default, n = nothing, f = full, i = index. */
  replicaIdentity: string
  columns: RelationColumn[]
}

/**
 * A tuple as it arrived: its values stay bytes of the message (`data`) until something reads
 * them. Per column i, `spans[2i]` is where its text starts, or NATIVE_NULL, or NATIVE_UNSENT
 * ("unchanged TOAST": an update left the value out — never write a placeholder for it), and
 * `spans[2i + 1]` its length in bytes: the layout of a NativeRow.
 */
export interface RawTuple {
  data: Buffer
  spans: Int32Array
}

export type PgOutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTime: number; xid: number }
  | { tag: 'commit'; commitLsn: bigint; endLsn: bigint; commitTime: number }
  | { tag: 'relation'; relation: Relation }
  | { tag: 'insert'; relationOid: number; tuple: RawTuple }
  | { tag: 'update'; relationOid: number; oldTuple: RawTuple | null; oldIsKeyOnly: boolean; tuple: RawTuple }
  | { tag: 'delete'; relationOid: number; oldTuple: RawTuple; oldIsKeyOnly: boolean }
  | { tag: 'truncate'; relationOids: number[] }
  | { tag: 'other'; code: string }

/** Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
const PG_EPOCH_MS = 946_684_800_000

class Reader {
  private offset = 0
  constructor(private readonly buffer: Buffer) {}
  byte(): number {
    return this.buffer.readUInt8(this.offset++)
  }
  char(): string {
    return String.fromCharCode(this.byte())
  }
  int16(): number {
    const value = this.buffer.readInt16BE(this.offset)
    this.offset += 2
    return value
  }
  int32(): number {
    const value = this.buffer.readInt32BE(this.offset)
    this.offset += 4
    return value
  }
  uint64(): bigint {
    const value = this.buffer.readBigUInt64BE(this.offset)
    this.offset += 8
    return value
  }
  /** Timestamp: microseconds since 2000-01-01 → ms since the Unix epoch. */
  timestamp(): number {
    const micros = this.buffer.readBigInt64BE(this.offset)
    this.offset += 8
    return PG_EPOCH_MS + Number(micros / 1000n)
  }
  string(): string {
    const end = this.buffer.indexOf(0, this.offset)
    const value = this.buffer.toString('utf8', this.offset, end)
    this.offset = end + 1
    return value
  }
  tuple(): RawTuple {
    const count = this.int16()
    const spans = new Int32Array(2 * count)
    for (let index = 0; index < count; index++) {
      const kind = this.byte()
      if (kind === 0x6e /* n */) spans[2 * index] = NATIVE_NULL
      else if (kind === 0x75 /* u */) spans[2 * index] = NATIVE_UNSENT
      else if (kind === 0x74 /* t */) {
        const length = this.int32()
        spans[2 * index] = this.offset
        spans[2 * index + 1] = length
        this.offset += length
      } else
        throw new Error(
          `pgoutput: unsupported tuple value kind "${String.fromCharCode(kind)}" (binary mode is not used)`,
        )
    }
    return { data: this.buffer, spans }
  }
}

/** Decodes one pgoutput message. */
export function parsePgOutput(data: Buffer): PgOutputMessage {
  const reader = new Reader(data)
  const code = reader.char()
  switch (code) {
    case 'B':
      return { tag: 'begin', finalLsn: reader.uint64(), commitTime: reader.timestamp(), xid: reader.int32() }
    case 'C': {
      reader.byte() // flags
      return { tag: 'commit', commitLsn: reader.uint64(), endLsn: reader.uint64(), commitTime: reader.timestamp() }
    }
    case 'R': {
      const oid = reader.int32()
      const schema = reader.string()
      const name = reader.string()
      const replicaIdentity = reader.char()
      const count = reader.int16()
      const columns: RelationColumn[] = []
      for (let index = 0; index < count; index++) {
        const flags = reader.byte()
        const columnName = reader.string()
        const typeOid = reader.int32()
        reader.int32() // type modifier
        columns.push({ name: columnName, typeOid, isKey: (flags & 1) === 1 })
      }
      return { tag: 'relation', relation: { oid, schema, name, replicaIdentity, columns } }
    }
    case 'I': {
      const relationOid = reader.int32()
      reader.char() // 'N'
      return { tag: 'insert', relationOid, tuple: reader.tuple() }
    }
    case 'U': {
      const relationOid = reader.int32()
      let kind = reader.char()
      let oldTuple: RawTuple | null = null
      let oldIsKeyOnly = false
      if (kind === 'K' || kind === 'O') {
        oldIsKeyOnly = kind === 'K'
        oldTuple = reader.tuple()
        kind = reader.char()
      }
      return { tag: 'update', relationOid, oldTuple, oldIsKeyOnly, tuple: reader.tuple() }
    }
    case 'D': {
      const relationOid = reader.int32()
      const kind = reader.char()
      return { tag: 'delete', relationOid, oldIsKeyOnly: kind === 'K', oldTuple: reader.tuple() }
    }
    case 'T': {
      const count = reader.int32()
      reader.byte() // options
      const relationOids: number[] = []
      for (let index = 0; index < count; index++) relationOids.push(reader.int32())
      return { tag: 'truncate', relationOids }
    }
    default:
      return { tag: 'other', code }
  }
}

/** `X/Y` text of an LSN. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`
}

/** An LSN from its `X/Y` text. */
export function parseLsn(text: string): bigint {
  const [high = '0', low = '0'] = text.split('/')
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`)
}

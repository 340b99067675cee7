import { randomBytes } from 'node:crypto'
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Bytes gathered before one write to the file. */
const WRITE_CHUNK = 1 << 20

/**
 * The messages (or change records) of one source transaction too large to hold in memory,
 * written to a temporary file as they arrive (each as a 4-byte length and its bytes) and read
 * back in parts, in order.
 * The directory is `REPLICATOR_SPILL_DIR`, else the system's temporary directory.
 */
export class SpillFile {
  readonly path: string
  private fd: number | null
  private pending: Buffer[] = []
  private pendingBytes = 0
  private written = 0
  private readAt = 0
  private carry: Buffer = Buffer.alloc(0)
  /** Messages written. */
  count = 0

  constructor(directory: string = tmpdir()) {
    this.path = join(directory, `mostajs-replicator-${process.pid}-${randomBytes(6).toString('hex')}.spill`)
    this.fd = this.wrap('create', () => openSync(this.path, 'wx+', 0o600))
  }

  write(message: Buffer): void {
    const header = Buffer.allocUnsafe(4)
    header.writeUInt32BE(message.length)
    this.pending.push(header, message)
    this.pendingBytes += 4 + message.length
    this.count++
    if (this.pendingBytes >= WRITE_CHUNK) this.flush()
  }

  /** Writes what is still gathered (call once the transaction is complete). */
  flush(): void {
    if (!this.pendingBytes || this.fd === null) return
    const data = Buffer.concat(this.pending, this.pendingBytes)
    this.pending = []
    this.pendingBytes = 0
    this.wrap('write to', () => {
      for (let done = 0; done < data.length;)
        done += writeSync(this.fd!, data, done, data.length - done, this.written + done)
    })
    this.written += data.length
  }

  /** The next messages in order, at most `max` of them; none once all were read. */
  read(max: number): Buffer[] {
    const messages: Buffer[] = []
    while (messages.length < max) {
      if (this.carry.length < 4 && !this.fill(4)) break
      const length = this.carry.readUInt32BE(0)
      if (this.carry.length < 4 + length && !this.fill(4 + length))
        throw new Error(`the spill file ${this.path} ends inside a message`)
      messages.push(this.carry.subarray(4, 4 + length))
      this.carry = this.carry.subarray(4 + length)
    }
    return messages
  }

  /** Reads again from the first message (a consumer starting over after a failed apply). */
  rewind(): void {
    this.readAt = 0
    this.carry = Buffer.alloc(0)
  }

  /** Deletes the file; safe to call more than once. */
  remove(): void {
    if (this.fd === null) return
    try {
      closeSync(this.fd)
    } catch {
      /* already closed */
    }
    this.fd = null
    this.pending = []
    try {
      unlinkSync(this.path)
    } catch {
      /* already gone */
    }
  }

  /** Reads until `carry` holds at least `bytes` bytes; false at the end of the file. */
  private fill(bytes: number): boolean {
    if (this.fd === null) return false
    while (this.carry.length < bytes && this.readAt < this.written) {
      const chunk = Buffer.allocUnsafe(Math.max(WRITE_CHUNK, bytes - this.carry.length))
      const read = readSync(this.fd, chunk, 0, Math.min(chunk.length, this.written - this.readAt), this.readAt)
      if (read === 0) break
      this.readAt += read
      this.carry = this.carry.length ? Buffer.concat([this.carry, chunk.subarray(0, read)]) : chunk.subarray(0, read)
    }
    return this.carry.length >= bytes
  }

  private wrap<T>(what: string, fn: () => T): T {
    try {
      return fn()
    } catch (error) {
      throw new Error(
        `could not ${what} ${this.path} to hold a large source transaction (${(error as Error).message}); free some space or set REPLICATOR_SPILL_DIR`,
      )
    }
  }
}

import {
  ReplicatorError,
  type ChangeCapture,
  type ChangeEvent,
  type ChangeStream,
  type Dialect,
  type Position,
} from '@mostajs/replicator-core'

/** Options of {@link openChangeStream}. */
export interface OpenChangeStreamOptions {
  /** Capture name: it names the slot and publication, or the triggers and changelog (1 to 48 of `A-Za-z0-9_.-`). */
  name: string
  /** Tables to capture (the capture is created, or extended, when opened). */
  collections: string[]
  /** Skip what was committed up to this position (default: everything the capture still holds). */
  after?: Position | null
  /** Most changes read from the log at once (default 1000). */
  batchSize?: number
  /** Pause between reads when nothing is pending (default 200 ms). */
  pollMs?: number
  /** Drop the capture when the stream is closed (default false: it keeps changes for the next open). */
  dropOnClose?: boolean
}

/**
 * The captured changes of a source as an async iterable, in commit order, at least once.
 * A batch of whole transactions is confirmed to the source — which may then forget it — only
 * when the consumer's loop asks for the event after the batch's last one, i.e. after it
 * processed them all. A consumer that stops (break, throw, crash) gets the unconfirmed
 * batch again from the next stream opened with the same name.
 *
 * @example
 * const changes = await openChangeStream(db, { name: 'audit', collections: ['orders'] })
 * for await (const event of changes) console.log(event.op, event.collection, event.key)
 */
export async function openChangeStream(source: Dialect, options: OpenChangeStreamOptions): Promise<ChangeStream> {
  if (!source.capture) {
    throw new ReplicatorError('NOT_SUPPORTED', `${source.name} has no change capture.`, {
      details: { dialect: source.name },
    })
  }
  const capture: ChangeCapture = source.capture
  if (typeof options.name !== 'string' || !/^[A-Za-z0-9_.-]{1,48}$/.test(options.name)) {
    throw new ReplicatorError(
      'CONFIG_INVALID',
      `Change stream name ${JSON.stringify(options.name)}: use 1 to 48 letters, digits, '_', '.' or '-' (it names slots and triggers).`,
    )
  }
  if (!Array.isArray(options.collections) || !options.collections.length)
    throw new ReplicatorError('CONFIG_INVALID', `Change stream "${options.name}" needs collections.`)
  await capture.setup({ name: options.name, collections: options.collections })
  const maxEvents = options.batchSize ?? 1000
  const pollMs = options.pollMs ?? 200
  let closed = false
  let wakeUp: (() => void) | undefined
  let iterating = false

  async function* events(): AsyncGenerator<ChangeEvent> {
    let after = options.after ?? null
    while (!closed) {
      const batch = await capture.read(options.name, { after, maxEvents })
      if (batch.caughtUp && batch.position) {
        // nothing of this stream up to the source's end: let the source forget that log, then wait
        await capture.confirm(options.name, batch.position)
        after = batch.position
      }
      if (!batch.position || batch.caughtUp) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pollMs)
          wakeUp = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        continue
      }
      // a transaction too large to hold comes in parts
      for (let part: ChangeEvent[] | null = batch.events; part; part = batch.nextPart ? await batch.nextPart() : null) {
        for (const event of part) {
          yield event
          if (closed) return // the rest of the batch stays unconfirmed
        }
      }
      // The loop body ran for every event of the batch: the source may forget it.
      await capture.confirm(options.name, batch.position)
      after = batch.position
    }
  }

  return {
    [Symbol.asyncIterator]() {
      if (iterating)
        throw new ReplicatorError(
          'CONFIG_INVALID',
          `Change stream "${options.name}" is already being iterated; open another stream for another consumer.`,
        )
      iterating = true
      return events()
    },
    async close() {
      closed = true
      wakeUp?.()
      if (options.dropOnClose) await source.capture?.drop(options.name)
    },
  }
}

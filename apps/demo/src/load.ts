import type { ReplicationManager } from '@mostajs/replicator'
import type { LoadCounters } from './live-view.js'

/**
 * A steady application load on project `shop`: `rate` writes per second (creates, balance
 * updates, deletes) through the master's EntityService, and three reads per write through
 * `resolveReadService`, which the router sends to the least-lagging slave in tolerance.
 * Writes refused during a promotion are counted and the load goes on with the new master.
 */
export function startLoad(
  manager: ReplicationManager,
  options: { rate: number; clientIds: string[] },
): { counters: LoadCounters; stop(): Promise<void> } {
  const counters: LoadCounters = { writes: 0, reads: 0, writeErrors: 0 }
  const userIds: string[] = []
  let stopped = false
  let sequence = 0
  const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]!

  async function writeOnce(): Promise<void> {
    const writes = manager.resolveWriteService('shop') // after a promotion: the new master
    const roll = Math.random()
    sequence++
    if (roll < 0.4 || userIds.length < 10) {
      const user = await writes.create('User', {
        email: `user${sequence}@example.com`,
        name: `User ${sequence}`,
        active: true,
      })
      userIds.push(String(user.id))
    } else if (roll < 0.7) {
      await writes.update('Client', pick(options.clientIds), { balance: Math.round(Math.random() * 1_000_000) / 100 })
    } else if (roll < 0.8) {
      const index = Math.floor(Math.random() * userIds.length)
      const [id] = userIds.splice(index, 1)
      await writes.delete('User', id!)
    } else {
      await writes.create('Client', {
        email: `client${sequence}@example.com`,
        name: `Client ${sequence}`,
        vip: sequence % 5 === 0,
        balance: sequence % 100,
        profile: { source: 'load' },
      })
    }
  }

  const running = (async () => {
    const started = Date.now()
    while (!stopped) {
      const due = Math.floor(((Date.now() - started) / 1000) * options.rate)
      if (counters.writes + counters.writeErrors >= due) {
        await new Promise((resolve) => setTimeout(resolve, 5))
        continue
      }
      try {
        await writeOnce()
        counters.writes++
      } catch {
        counters.writeErrors++ // e.g. FENCED while the standby is being promoted
      }
      for (let read = 0; read < 3; read++) {
        await manager
          .resolveReadService('shop')
          .findById('Client', pick(options.clientIds))
          .catch(() => null)
        counters.reads++
      }
    }
  })()
  return {
    counters,
    async stop() {
      stopped = true
      await running
    },
  }
}

import { expect, it } from 'vitest'
import { describeOnDialect, type DialectUnderTest } from './contract-helpers.js'

/**
 * The heartbeat contract, for every dialect that has `heartbeat`: a write is read back with
 * the server's clock, each writer has its own row, and a writer never seen reads as null.
 */
export function testHeartbeatContract(subject: DialectUnderTest): void {
  describeOnDialect(subject, 'heartbeat contract', (db) => {
    it('writes, reads back, one row per writer', async () => {
      const heartbeat = db().heartbeat!
      expect(heartbeat).toBeDefined()
      expect(await heartbeat.read('nobody')).toBeNull()
      const before = Date.now()
      const written = await heartbeat.write(7n, 'a')
      expect(written.sequence).toBe(7n)
      expect(Math.abs(written.at.getTime() - before)).toBeLessThan(60_000) // the server's clock, near ours
      await heartbeat.write(3n, 'b')
      await heartbeat.write(8n, 'a')
      expect((await heartbeat.read('a'))?.sequence).toBe(8n)
      expect((await heartbeat.read('b'))?.sequence).toBe(3n)
    })
  })
}

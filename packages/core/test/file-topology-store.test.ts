import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { FileTopologyStore } from '@mostajs/replicator-core'
import { expectReplicatorError, waitFor } from '@mostajs/replicator-testkit/vitest'

// The topology store of the processes of one host: a JSON file changed under a lock file.

const directory = mkdtempSync(join(tmpdir(), 'replicator-file-store-'))
afterAll(() => rmSync(directory, { recursive: true, force: true }))
const racer = fileURLToPath(new URL('./fixtures/cas-racer.ts', import.meta.url))

describe('file topology store', () => {
  it('processes racing on one file: every compare-and-set they won is one revision, none lost', async () => {
    const path = join(directory, 'race.json')
    const rounds = 25
    const outputs = await Promise.all(
      ['a', 'b', 'c', 'd'].map((name) =>
        promisify(execFile)(process.execPath, [
          '--conditions=source',
          '--import',
          'tsx',
          racer,
          path,
          name,
          String(rounds),
        ]),
      ),
    )
    const won = outputs.reduce((sum, output) => sum + Number(output.stdout.trim()), 0)
    expect(won).toBeGreaterThanOrEqual(rounds) // each round, someone wins
    expect((await new FileTopologyStore(path).read('shop'))!.revision).toBe(won) // and no win was overwritten
  })

  it('one coordinator per project; another takes over once it stops renewing, at once when it leaves', async () => {
    const path = join(directory, 'lead.json')
    const [a, b, c] = [new FileTopologyStore(path), new FileTopologyStore(path), new FileTopologyStore(path)]
    const leadA = await a.lead('shop', 'a', 600)
    const leadB = await b.lead('shop', 'b', 600)
    expect([leadA.isLeader(), leadB.isLeader()]).toEqual([true, false])
    await a.close() // a stops renewing without leaving (a crash): b leads once a's lease ran out
    await waitFor(() => leadB.isLeader(), 3000, 'b leads')
    expect(leadA.isLeader()).toBe(false) // a no longer trusts a lease it did not renew
    const leadC = await c.lead('shop', 'c', 600)
    expect(leadC.isLeader()).toBe(false)
    await leadB.close() // b leaves: c may lead at its next campaign
    await waitFor(() => leadC.isLeader(), 1000, 'c leads')
    await leadC.close()
    await b.close()
    await c.close()
  })

  it('a file that is not a topology is refused with its path, and left as it was', async () => {
    const path = join(directory, 'broken.json')
    writeFileSync(path, '{ not json')
    const store = new FileTopologyStore(path)
    const error = await expectReplicatorError(store.read('shop'), 'CONFIG_INVALID')
    expect(error.message).toContain(path)
    await expectReplicatorError(store.compareAndSet('shop', null, { master: 'x', epoch: 1 }), 'CONFIG_INVALID')
    expect(readFileSync(path, 'utf8')).toBe('{ not json')
  })
})

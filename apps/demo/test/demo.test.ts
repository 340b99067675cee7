import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { privateServer, runScript } from '@mostajs/replicator-testkit/vitest'

const app = fileURLToPath(new URL('..', import.meta.url))
const { available, skipNote } = privateServer('postgres')

describe.skipIf(!available)(`the demos, run as a newcomer runs them${skipNote}`, () => {
  it('pnpm demo: load, promotion half-way, every copy equal at the end', async () => {
    const { code, stdout, stderr } = await runScript('src/main.ts', ['--duration', '4', '--rate', '100'], { cwd: app }) // as `pnpm demo` runs it
    expect(stderr).toBe('')
    expect(stdout).toMatch(/standby is the master \(epoch 1/)
    expect(stdout).toMatch(/writes resumed on the new master: [1-9]\d* writes/)
    expect(stdout).toMatch(/getSyncStats\('shop-to-analytics'\): [1-9]\d* records .* 0 dead letters, 1 re-seed/)
    expect(stdout).toContain('✓ every copy is equal')
    expect(stdout).toContain('postgres://demo:****@')
    expect(stdout).not.toContain('not-my-password')
    expect(code).toBe(0)
  }, 180_000)

  it('pnpm demo:service: the scaffolded service answers /health and /metrics and stops on SIGTERM', async () => {
    const { code, stdout } = await runScript('src/service.ts', [], { cwd: app })
    expect(stdout).toMatch(/GET \/health → 200 \{"status":"ok"/)
    expect(stdout).toMatch(/orders-to-analytics: streaming true, inserted 500, .*deleted 2, failed 0/)
    expect(stdout).toMatch(/replicator_rule_events_applied_total\{rule="orders-to-analytics",op="create"\} 500/)
    expect(stdout).toMatch(/stopped cleanly \(exit code 0\)/)
    expect(code).toBe(0)
    expect(readdirSync(app).filter((name) => name.startsWith('.service-demo-'))).toEqual([]) // its temp project is gone
  }, 120_000)
})

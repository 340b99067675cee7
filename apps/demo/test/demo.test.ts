import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { privateServer } from '@mostajs/replicator-testkit/vitest'

const app = fileURLToPath(new URL('..', import.meta.url))
const { available, skipNote } = privateServer('postgres')

/** Runs a demo script as `pnpm demo` does (node with the tsx loader), in its own process. */
function runDemo(script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', script, ...args], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => { stdout += chunk })
    child.stderr.on('data', (chunk) => { stderr += chunk })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

describe.skipIf(!available)(`the demos, run as a newcomer runs them${skipNote}`, () => {
  it('pnpm demo: load, promotion half-way, every copy equal at the end', async () => {
    const { code, stdout, stderr } = await runDemo('src/main.ts', ['--duration', '4', '--rate', '100'])
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
    const { code, stdout } = await runDemo('src/service.ts', [])
    expect(stdout).toMatch(/GET \/health → 200 \{"status":"ok"/)
    expect(stdout).toMatch(/orders-to-analytics: streaming true, inserted 500, .*deleted 2, failed 0/)
    expect(stdout).toMatch(/replicator_rule_events_applied_total\{rule="orders-to-analytics",op="create"\} 500/)
    expect(stdout).toMatch(/stopped cleanly \(exit code 0\)/)
    expect(code).toBe(0)
    expect(readdirSync(app).filter((name) => name.startsWith('.service-demo-'))).toEqual([]) // its temp project is gone
  }, 120_000)
})

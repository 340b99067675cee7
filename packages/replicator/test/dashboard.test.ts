import '@mostajs/replicator-dialect-sqlite'
import { existsSync, mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDialect, type ReplicationManager } from '@mostajs/replicator'
import { startStatusServer, type StatusServer } from '@mostajs/replicator/service'
import { testBackends, waitFor } from '@mostajs/replicator-testkit/vitest'
import { managedSqlitePair } from './fixtures/sqlite-pair.js'

// The status page in a real browser (Debian's Chromium, driven by playwright-core): what it
// shows must be what /api/* answers.

// the page's globals, as the functions run in the browser see them (the tests have no DOM types)
declare const document: {
  body: { dataset: Record<string, string | undefined> }
  querySelector(selector: string): { textContent: string | null } | null
}

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const required = process.env.REPLICATOR_REQUIRE_BACKENDS === '1'
const browserAvailable = existsSync(CHROMIUM)
const screenshots = fileURLToPath(new URL('../../../test-results/', import.meta.url))

describe.skipIf(!browserAvailable && !required)(`the status page in Chromium (${CHROMIUM})`, () => {
  let pair: Awaited<ReturnType<typeof managedSqlitePair>>
  let rm: ReplicationManager
  let status: StatusServer
  let browser: Browser
  const TOKEN = 'page-token'
  const api = async (path: string) =>
    (await fetch(`${status.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as Promise<unknown>

  beforeAll(async () => {
    pair = await managedSqlitePair()
    rm = pair.rm
    // a rule whose target refuses every row (a NOT NULL column the source lacks): dead letters
    const target = await testBackends().sqlite.freshDatabase()
    const refusing = await connectDialect({ dialect: 'sqlite', uri: target.uri })
    await refusing.query('CREATE TABLE notes (id TEXT PRIMARY KEY, text TEXT, required TEXT NOT NULL)')
    await refusing.close()
    await rm.addReplica('archive', { name: 'store', role: 'master', dialect: 'sqlite', uri: target.uri })
    await rm.addReplicationRule({
      name: 'notes-archive',
      source: 'app',
      target: 'archive',
      mode: 'cdc',
      collections: ['notes'],
    })
    await rm.sync('notes-archive') // the snapshot (nothing yet), then the stream: refused rows are dead-lettered
    const writer = rm.resolveWriteService('app')
    for (const text of ['one', 'two', 'three']) await writer.create('Note', { text })
    await rm.sync('notes-archive')
    status = await startStatusServer(rm, { port: 0, token: TOKEN, streamIntervalMs: 200 })
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await status?.close()
    await pair?.close()
  })

  it('shows the topology, the rule and its dead letters as /api/* gives them, updated by the stream', async () => {
    const page = await browser.newPage()
    const failures: string[] = []
    page.on('pageerror', (error) => failures.push(error.message))
    page.on('console', (message) => {
      if (message.type() === 'error') failures.push(message.text())
    })
    await page.goto(`${status.url}/?token=${TOKEN}`)
    await page.waitForSelector('[data-rule="notes-archive"]')
    await page.waitForFunction(() => Number(document.body.dataset.updates ?? 0) >= 3) // the stream keeps coming

    const replicas = (await api('/api/replicas?by=project')) as Record<
      string,
      Array<{ name: string; role: string; status: string; dialect: string; uri: string }>
    >
    for (const [project, list] of Object.entries(replicas))
      for (const replica of list) {
        const row = page.locator(`[data-replica="${project}/${replica.name}"]`)
        expect(await row.locator('[data-field="role"]').textContent()).toBe(replica.role)
        expect(await row.locator('[data-field="status"]').textContent()).toBe(replica.status)
        expect(await row.locator('[data-field="dialect"]').textContent()).toBe(replica.dialect)
        expect(await row.locator('[data-field="uri"]').textContent()).toBe(replica.uri)
      }
    expect(await page.locator('[data-replica]').count()).toBe(3) // main, copy, store

    const [rule] = (await api('/api/rules')) as Array<{
      name: string
      stats: { deadLettered: number; created: number }
      lastStats: { inserted: number; failed: number; durationMs: number }
      enabled: boolean
    }>
    expect(rule).toMatchObject({ name: 'notes-archive', enabled: true })
    expect(rule!.stats.deadLettered).toBe(3)
    expect(rule!.lastStats).toMatchObject({ inserted: 0, failed: 3 })
    const row = page.locator('[data-rule="notes-archive"]')
    expect(await row.locator('[data-field="deadLettered"]').textContent()).toBe('3')
    expect(await row.locator('[data-field="created"]').textContent()).toBe(String(rule!.stats.created))
    expect(await page.locator('#health').textContent()).toBe(((await api('/health')) as { status: string }).status)

    // a write on the master reaches the page through the stream, without a reload
    await rm.resolveWriteService('app').create('Note', { text: 'four' })
    await rm.sync('notes-archive')
    await page.waitForFunction(
      () => document.querySelector('[data-rule="notes-archive"] [data-field="deadLettered"]')?.textContent === '4',
    )

    mkdirSync(screenshots, { recursive: true })
    const file = join(screenshots, 'dashboard.png')
    await page.screenshot({ path: file, fullPage: true })
    expect(statSync(file).size).toBeGreaterThan(5_000)
    expect(failures, failures.join('; ')).toEqual([]) // no script error, no CSP violation
  })

  it('the stream and the page need the token; the stream sends server-sent events', async () => {
    expect((await fetch(`${status.url}/api/stream`)).status).toBe(401)
    expect((await fetch(`${status.url}/?token=wrong`)).status).toBe(401)
    const controller = new AbortController()
    const response = await fetch(`${status.url}/api/stream?token=${TOKEN}`, { signal: controller.signal })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const reader = response.body!.getReader()
    let text = ''
    await waitFor(
      async () => {
        const { value } = await reader.read()
        text += new TextDecoder().decode(value)
        return text.includes('event: status')
      },
      5_000,
      'a status event',
    )
    controller.abort()
    const data = JSON.parse(text.split('data: ')[1]!.split('\n')[0]!) as { replicas: Record<string, unknown[]> }
    expect(Object.keys(data.replicas).sort()).toEqual(['app', 'archive'])
  })
})

import { createHash } from 'node:crypto'

// The live page the status server serves at `/`: one HTML document with its style and script
// inline (no network access beyond this server), fed by `/api/stream` (server-sent events).
// Data is written with textContent only: nothing from the stream is parsed as HTML.

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2430; background: #f6f7f9 }
h1 { font-size: 1.3rem; margin: 0 0 .5rem } h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px #0002; min-width: 60% }
th, td { padding: .35rem .7rem; border-bottom: 1px solid #e3e6ea; text-align: left; white-space: nowrap }
th { background: #eef1f5; font-weight: 600 } td.number { text-align: right; font-variant-numeric: tabular-nums }
.badge { display: inline-block; padding: .1rem .5rem; border-radius: .6rem; font-weight: 600 }
.ok, .up, .healthy { background: #d8f3dc; color: #1b5e20 } .down, .fenced, .unreachable { background: #fde2e1; color: #8a1c1c }
.lagging, .connecting, .warning { background: #fff1c2; color: #6b4e00 } .master { font-weight: 700 }
#reasons li { color: #8a1c1c } #warnings li { color: #6b4e00 } #updated { color: #667 }
svg.lag { width: 160px; height: 28px; vertical-align: middle } svg.lag polyline { fill: none; stroke: #3867d6; stroke-width: 1.5 }
`

const SCRIPT = `
const token = new URLSearchParams(location.search).get('token')
const history = new Map() // replica key → recent lag samples (ms)
const previous = new Map() // rule → { at, records }
const $ = (id) => document.getElementById(id)
function cell(row, text, className) {
  const td = row.insertCell()
  td.textContent = text === null || text === undefined ? '—' : String(text)
  if (className) td.className = className
  return td
}
function badge(td, text) {
  td.textContent = ''
  const span = document.createElement('span')
  span.className = 'badge ' + text
  span.textContent = text
  td.appendChild(span)
}
function sparkline(samples) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg')
  svg.setAttribute('class', 'lag')
  svg.setAttribute('viewBox', '0 0 160 28')
  const top = Math.max(1, ...samples)
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline')
  line.setAttribute('points', samples.map((value, index) => (index * 160) / Math.max(1, samples.length - 1) + ',' + (27 - (value / top) * 26)).join(' '))
  svg.appendChild(line)
  return svg
}
function renderReplicas(byProject) {
  const root = $('projects')
  root.textContent = ''
  for (const [project, replicas] of Object.entries(byProject)) {
    const title = document.createElement('h2')
    title.textContent = 'Project ' + project
    root.appendChild(title)
    const table = document.createElement('table')
    table.createTHead().innerHTML = '<tr><th>replica</th><th>role</th><th>state</th><th>lag ms</th><th>tolerance ms</th><th>lag, last minute</th><th>reads routed</th><th>dialect</th><th>uri</th></tr>'
    const body = table.createTBody()
    for (const replica of replicas) {
      const key = project + '/' + replica.name
      const samples = history.get(key) ?? []
      samples.push(replica.lag ?? 0)
      if (samples.length > 60) samples.shift()
      history.set(key, samples)
      const row = body.insertRow()
      row.dataset.replica = key
      cell(row, replica.name, replica.role === 'master' ? 'master' : '').dataset.field = 'name'
      cell(row, replica.role).dataset.field = 'role'
      const state = cell(row, '')
      state.dataset.field = 'status'
      badge(state, replica.status)
      cell(row, replica.lag, 'number').dataset.field = 'lag'
      cell(row, replica.role === 'slave' ? replica.lagTolerance : null, 'number').dataset.field = 'lagTolerance'
      row.insertCell().appendChild(sparkline(samples))
      cell(row, replica.readsRouted, 'number').dataset.field = 'readsRouted'
      cell(row, replica.dialect).dataset.field = 'dialect'
      cell(row, replica.uri).dataset.field = 'uri'
    }
    root.appendChild(table)
  }
}
function renderRules(rules, at) {
  const body = $('rules').tBodies[0]
  body.textContent = ''
  for (const rule of rules) {
    const stats = rule.stats
    const before = previous.get(rule.name)
    const rate = before && at > before.at ? Math.round(((stats.recordsSynced - before.records) * 1000) / (at - before.at)) : null
    previous.set(rule.name, { at, records: stats.recordsSynced })
    const row = body.insertRow()
    row.dataset.rule = rule.name
    cell(row, rule.name).dataset.field = 'name'
    cell(row, rule.source + ' → ' + rule.target).dataset.field = 'route'
    cell(row, rule.mode).dataset.field = 'mode'
    const state = cell(row, '')
    badge(state, rule.consecutiveFailures > 0 ? 'warning' : rule.enabled ? 'ok' : 'down')
    cell(row, stats.created, 'number').dataset.field = 'created'
    cell(row, stats.updated, 'number').dataset.field = 'updated'
    cell(row, stats.deleted, 'number').dataset.field = 'deleted'
    cell(row, stats.deadLettered, 'number').dataset.field = 'deadLettered'
    cell(row, rate, 'number').dataset.field = 'rate'
    cell(row, stats.lagMs, 'number').dataset.field = 'lagMs'
    cell(row, rule.lastError).dataset.field = 'lastError'
  }
}
function renderHealth(health) {
  badge($('health'), health.status)
  for (const [id, items] of [['reasons', health.reasons], ['warnings', health.warnings]]) {
    const list = $(id)
    list.textContent = ''
    for (const item of items) {
      const li = document.createElement('li')
      li.textContent = item
      list.appendChild(li)
    }
  }
}
const stream = new EventSource('api/stream' + (token ? '?token=' + encodeURIComponent(token) : ''))
stream.addEventListener('status', (message) => {
  const status = JSON.parse(message.data)
  renderHealth(status.health)
  renderReplicas(status.replicas)
  renderRules(status.rules, Date.parse(status.at))
  $('updated').textContent = 'updated ' + new Date(status.at).toLocaleTimeString()
  document.body.dataset.updates = String(Number(document.body.dataset.updates ?? 0) + 1)
})
stream.addEventListener('error', () => { $('updated').textContent = 'disconnected: retrying…' })
`

const hash = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`

/** Content-Security-Policy of the page: its own inline style and script, and this server only. */
export const DASHBOARD_CSP = `default-src 'none'; connect-src 'self'; img-src 'self' data:; style-src ${hash(STYLE)}; script-src ${hash(SCRIPT)}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>replicator status</title>
<style>${STYLE}</style>
</head>
<body>
<h1>replicator <span id="health" class="badge">…</span> <small id="updated">connecting…</small></h1>
<ul id="reasons"></ul>
<ul id="warnings"></ul>
<div id="projects"></div>
<h2>Rules</h2>
<table id="rules">
<thead><tr><th>rule</th><th>source → target</th><th>mode</th><th>state</th><th>created</th><th>updated</th><th>deleted</th><th>dead letters</th><th>rows/s</th><th>lag ms</th><th>last error</th></tr></thead>
<tbody></tbody>
</table>
<script>${SCRIPT}</script>
</body>
</html>
`

// Load driver for the hub benchmark: N stock Yjs clients (yjs + y-websocket providers) in one
// room, the same for every hub under test. Prints one JSON line with the results.
//
//   node driver.mjs URL ROOM CLIENTS burst EDITS_PER_CLIENT
//   node driver.mjs URL ROOM CLIENTS rate EDITS_PER_SECOND SECONDS
//
// URL may list several hubs serving the same rooms, comma-separated: client i joins hub i mod k.
//
// Every edit appends a unique tag "<client.seq>" to the Y.Text "t". The driver notes when each tag
// was written and when each other client first sees it (edit-to-visible latency), and stops when
// every client has every tag (converged) or after a time limit.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [url, room, clientsArg, mode, a, b] = process.argv.slice(2)
const urls = url.split(',')
const n = Number(clientsArg)
const LIMIT_MS = 180_000
const sentAt = new Map()
const latencies = []
const seen = new Array(n).fill(0)
const clients = []
let expected = 0

const until = (pred, ms) => new Promise((resolve, reject) => {
  const t0 = performance.now()
  const tick = () => {
    if (pred()) resolve()
    else if (performance.now() - t0 > ms) reject(new Error('timeout'))
    else setTimeout(tick, 5)
  }
  tick()
})
for (let i = 0; i < n; i++) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(urls[i % urls.length], room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  const text = doc.getText('t')
  text.observe((event) => {
    const now = performance.now()
    for (const d of event.delta) {
      if (typeof d.insert !== 'string') continue
      for (const m of d.insert.matchAll(/<(\d+)\.(\d+)>/g)) {
        if (Number(m[1]) === i) continue
        seen[i]++
        const t0 = sentAt.get(m[0])
        if (t0 !== undefined) latencies.push(now - t0)
      }
    }
  })
  clients.push({ doc, provider, text })
  // Joined one at a time: this measures load, not join races (pycrdt-websocket loses some
  // simultaneous first joins; crdtdoc's tests cover that race separately).
  await until(() => provider.synced, 30_000)
}

const pause = () => new Promise((resolve) => setImmediate(resolve))
const edit = (i, seq) => {
  const tag = `<${i}.${seq}>`
  sentAt.set(tag, performance.now())
  clients[i].text.insert(clients[i].text.length, tag)
}

await until(() => clients.every((c) => c.provider.synced), 30_000)
const start = performance.now()
if (mode === 'burst') {
  const edits = Number(a)
  expected = edits * (n - 1)
  for (let seq = 0; seq < edits; seq++) {
    for (let i = 0; i < n; i++) edit(i, seq)
    if (seq % 10 === 9) await pause()
  }
} else {
  const rate = Number(a)
  const seconds = Number(b)
  const perClient = Math.round(rate * seconds)
  expected = perClient * (n - 1)
  const timers = clients.map((_, i) => new Promise((resolve) => {
    let seq = 0
    setTimeout(() => {
      const timer = setInterval(() => {
        edit(i, seq++)
        if (seq >= perClient) { clearInterval(timer); resolve() }
      }, 1000 / rate)
    }, Math.random() * 1000 / rate)
  }))
  await Promise.all(timers)
}
let converged = true
try {
  await until(() => seen.every((s) => s >= expected), LIMIT_MS)
} catch {
  converged = false
}
const seconds = (performance.now() - start) / 1000
latencies.sort((x, y) => x - y)
const pct = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null
const texts = new Set(clients.map((c) => c.text.toString()))
process.stdout.write(JSON.stringify({
  converged: converged && texts.size === 1,
  seconds,
  edits: expected / (n - 1) * n,
  updates_per_s: (expected / (n - 1) * n) / seconds,
  p50_ms: pct(0.5),
  p99_ms: pct(0.99),
  received: seen.reduce((x, y) => x + y, 0),
  expected: expected * n,
}) + '\n')
for (const c of clients) c.provider.destroy()
process.exit(0)

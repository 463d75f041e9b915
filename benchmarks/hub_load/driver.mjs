// Load driver for the hub benchmark: N stock Yjs clients (yjs + y-websocket providers) in one
// room, the same for every hub under test. Prints one JSON line with the results.
//
//   node driver.mjs URL ROOM CLIENTS burst EDITS_PER_CLIENT
//   node driver.mjs URL ROOM CLIENTS rate EDITS_PER_SECOND SECONDS
//   node driver.mjs URL ROOM CLIENTS flush KILOBYTES SECONDS
//   node driver.mjs URL ROOM CLIENTS storm EDITS_PER_SECOND keep|fresh
//
// flush: client 0 types 10 edits/s for SECONDS while every other client sends one update of
// KILOBYTES at a random moment (agents flushing a drafted document); latency is reported for all
// edits and for the typist's alone.
//
// storm: a reconnect storm in a room holding the automerge-paper document, run by storm.mjs (see
// there): CLIENTS clients all reconnect at once while one more client types EDITS_PER_SECOND.
//
// CRDTDOC_PROVIDER=hocuspocus uses @hocuspocus/provider (Hocuspocus speaks its own framing of
// y-protocols) instead of y-websocket's WebsocketProvider.
//
// URL may list several hubs serving the same rooms, comma-separated: client i joins hub i mod k.
//
// Every edit appends a unique tag "<client.seq>" to the Y.Text "t". The driver notes when each tag
// was written and when each other client first sees it (edit-to-visible latency), and stops when
// every client has every tag (converged) or after a time limit.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider } from '@hocuspocus/provider'
import WebSocket from 'ws'

const [url, room, clientsArg, mode, a, b] = process.argv.slice(2)
if (mode === 'storm') await import('./storm.mjs') // prints its own line and exits
const urls = url.split(',')
const n = Number(clientsArg)
const LIMIT_MS = 180_000
const sentAt = new Map()
const latencies = []
const typistLatencies = []
const hocuspocus = process.env.CRDTDOC_PROVIDER === 'hocuspocus'
const seen = new Array(n).fill(0)
const clients = []
let expected = 0 // tags each client must see (edits by the others)
let totalEdits = 0
let wanted = (i) => expected

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
  const url = urls[i % urls.length]
  const provider = hocuspocus
    ? new HocuspocusProvider({ url, name: room, document: doc, WebSocketPolyfill: WebSocket })
    : new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  const text = doc.getText('t')
  text.observe((event) => {
    const now = performance.now()
    for (const d of event.delta) {
      if (typeof d.insert !== 'string') continue
      const head = d.insert.length > 1000 ? d.insert.slice(0, 64) : d.insert // big: tag first
      for (const m of head.matchAll(/<(\d+)\.(\d+)>/g)) {
        if (Number(m[1]) === i) continue
        seen[i]++
        const t0 = sentAt.get(m[0])
        if (t0 !== undefined) {
          latencies.push(now - t0)
          if (m[1] === '0' && mode === 'flush') typistLatencies.push(now - t0)
        }
      }
    }
  })
  clients.push({ doc, provider, text })
  // Joined one at a time: this measures load, not join races (pycrdt-websocket loses some
  // simultaneous first joins; crdtdoc's tests cover that race separately).
  await until(() => (hocuspocus ? provider.isSynced : provider.synced), 30_000)
}

const pause = () => new Promise((resolve) => setImmediate(resolve))
const edit = (i, seq) => {
  const tag = `<${i}.${seq}>`
  sentAt.set(tag, performance.now())
  clients[i].text.insert(clients[i].text.length, tag)
}

await until(() => clients.every((c) => (hocuspocus ? c.provider.isSynced : c.provider.synced)), 30_000)
const start = performance.now()
if (mode === 'burst') {
  const edits = Number(a)
  expected = edits * (n - 1)
  totalEdits = edits * n
  for (let seq = 0; seq < edits; seq++) {
    for (let i = 0; i < n; i++) edit(i, seq)
    if (seq % 10 === 9) await pause()
  }
} else if (mode === 'flush') {
  const kilobytes = Number(a)
  const seconds = Number(b)
  const typed = Math.round(seconds * 10)
  totalEdits = typed + (n - 1)
  wanted = (i) => (i === 0 ? n - 1 : typed + n - 2) // the others' flushes, and the typing
  const filler = 'x'.repeat(kilobytes * 1024)
  const flushes = clients.slice(1).map((_, k) => new Promise((resolve) => {
    setTimeout(() => {
      const i = k + 1
      const tag = `<${i}.0>`
      sentAt.set(tag, performance.now())
      clients[i].text.insert(clients[i].text.length, tag + filler)
      resolve()
    }, Math.random() * seconds * 1000)
  }))
  for (let seq = 0; seq < typed; seq++) {
    edit(0, seq)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await Promise.all(flushes)
} else {
  const rate = Number(a)
  const seconds = Number(b)
  const perClient = Math.round(rate * seconds)
  expected = perClient * (n - 1)
  totalEdits = perClient * n
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
  await until(() => seen.every((s, i) => s >= wanted(i)), LIMIT_MS)
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
  edits: totalEdits,
  updates_per_s: totalEdits / seconds,
  p50_ms: pct(0.5),
  p99_ms: pct(0.99),
  typist_p99_ms: typistLatencies.length ? typistLatencies.sort((x, y) => x - y)[Math.min(typistLatencies.length - 1, Math.floor(0.99 * typistLatencies.length))] : null,
  received: seen.reduce((x, y) => x + y, 0),
  expected: clients.reduce((sum, _, i) => sum + wanted(i), 0),
}) + '\n')
for (const c of clients) c.provider.destroy()
process.exit(0)

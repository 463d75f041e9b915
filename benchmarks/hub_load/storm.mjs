// Reconnect storm for the hub benchmark (run through driver.mjs, mode "storm"):
//
//   node driver.mjs URL ROOM CLIENTS storm EDITS_PER_SECOND keep|fresh
//
// The room holds the automerge-paper document: the typist's Y.Doc starts with the whole editing
// trace applied (the trace from $CRDTDOC_TRACE, else /work/shared/data/automerge-paper.json.gz;
// its Yjs update is cached in $CRDTDOC_STORM_CACHE if set) and the typist connects first, so the
// hub gets it from the typist's sync step 2, the same bytes for every hub. Then CLIENTS stock
// Yjs clients join one at a time and sync it (checked: every text equals the trace's final text).
// The typist types EDITS_PER_SECOND edits into the middle of the text; after WARMUP_MS all
// CLIENTS close their connection at once, and once every socket is closed they all reconnect at
// once ("the reconnect moment"), each on a new connection:
//   keep:  the same provider and Y.Doc (provider.disconnect() / provider.connect(), as a real
//          reconnect), so the hub answers step 1s from up-to-date peers with small step 2s;
//   fresh: a new, empty Y.Doc and provider each, so every client is sent the whole document.
// The typist keeps typing until STORM_MS after the disconnect (or until the resync ended or
// timed out, if later), then stops.
//
// Prints one JSON line: sync_all_s (reconnect moment until every client has had its sync step 2
// and holds every edit typed before the reconnect moment), step2_all_s (until every client has
// had its sync step 2), close_all_s (disconnect until every socket is closed), p50/p99 of the
// typist's edit-to-visible latency at the other clients for edits typed from IN_FLIGHT_MS before
// the disconnect (such an edit is still in flight when the sockets close) until typing stopped
// (typist_p50_ms, typist_p99_ms; p50_ms, p99_ms the same figures), baseline_p99_ms (edits typed
// before that), hub_cpu_storm_s (the hub's CPU seconds from the disconnect until all resynced,
// read from /proc/$CRDTDOC_HUB_PID/stat if set), unplanned_closes (connections that closed after
// the reconnect), how busy the clients' own event loop was before the storm and during the resync
// (driver_busy_*, 0..1: near 1 the clients, not the hub, set the pace), and whether everything
// converged (all texts equal the typist's at the end). CRDTDOC_STORM_DEBUG=1 also prints, on
// stderr, each typist edit's time and worst latency and when each client had its step 2.
//
// Visibility is read from the typist's clock in each client's state vector, not from the text, so
// it works the same for kept and fresh documents.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider } from '@hocuspocus/provider'
import WebSocket from 'ws'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'

const [url, room, clientsArg, , rateArg, variant = 'keep'] = process.argv.slice(2)
const urls = url.split(',')
const n = Number(clientsArg) // reconnecting clients; the typist is one more
const rate = Number(rateArg)
if (!(n > 0 && rate > 0 && (variant === 'keep' || variant === 'fresh'))) {
  throw new Error('usage: driver.mjs URL ROOM CLIENTS storm EDITS_PER_SECOND keep|fresh')
}
const fresh = variant === 'fresh'
const hocuspocus = process.env.CRDTDOC_PROVIDER === 'hocuspocus'
const WARMUP_MS = 2_000 // typing before the storm: the baseline latency
const STORM_MS = 8_000 // typing from the disconnect on: the storm window
const JOIN_LIMIT_MS = 30_000 // per client, and for the document check
const CLOSE_LIMIT_MS = 10_000
const RESYNC_LIMIT_MS = 45_000
const SETTLE_LIMIT_MS = 20_000
const IN_FLIGHT_MS = 500 // an edit typed this long before the disconnect is caught by the storm
// The hub's CPU seconds so far, if hub_load.py told us its process (same machine, loopback).
const hubPid = process.env.CRDTDOC_HUB_PID
const clockTicks = Number(process.env.CRDTDOC_CLK_TCK || 100)
const hubCpu = () => {
  if (!hubPid) return null
  try {
    const fields = readFileSync(`/proc/${hubPid}/stat`, 'utf8').split(')').pop().trim().split(/\s+/)
    return (Number(fields[11]) + Number(fields[12])) / clockTicks
  } catch {
    return null
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
const until = (pred, ms) => new Promise((resolve) => {
  const t0 = performance.now()
  const tick = () => {
    if (pred()) resolve(true)
    else if (performance.now() - t0 > ms) resolve(false)
    else setTimeout(tick, 2)
  }
  tick()
})

/** The automerge-paper trace applied to a Y.Text "t", as one Yjs update (cached if asked). */
const documentUpdate = () => {
  const cache = process.env.CRDTDOC_STORM_CACHE
  if (cache && existsSync(cache)) return new Uint8Array(readFileSync(cache))
  const path = process.env.CRDTDOC_TRACE ||
    fileURLToPath(new URL('../../../shared/data/automerge-paper.json.gz', import.meta.url))
  const trace = JSON.parse(gunzipSync(readFileSync(path)).toString())
  const doc = new Y.Doc()
  doc.clientID = 1 // fixed: the update's size depends on it (varint ids), so all runs load the same bytes
  const text = doc.getText('t')
  for (const txn of trace.txns) {
    for (const [pos, del, ins] of txn.patches) {
      doc.transact(() => {
        if (del > 0) text.delete(pos, del)
        if (ins) text.insert(pos, ins)
      })
    }
  }
  if (text.toString() !== trace.endContent) throw new Error('the trace did not replay to its end')
  const update = Y.encodeStateAsUpdate(doc)
  if (cache) writeFileSync(cache, update)
  return update
}

const update = documentUpdate()
const expectedText = (() => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, update)
  return doc.getText('t').toString()
})()

const providerFor = (i, doc) => {
  const u = urls[i % urls.length]
  return hocuspocus
    ? new HocuspocusProvider({ url: u, name: room, document: doc, WebSocketPolyfill: WebSocket })
    : new WebsocketProvider(u, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
}
const isSynced = (p) => (hocuspocus ? p.isSynced : p.synced)
const socketOf = (p) => (hocuspocus ? p.configuration.websocketProvider.webSocket : p.ws)

// the typist (client 0), holding the document before it connects
const typistDoc = new Y.Doc()
Y.applyUpdate(typistDoc, update)
const typistText = typistDoc.getText('t')
const typistId = typistDoc.clientID
const typed = [] // { at, clock } per typist edit: when typed, the typist's clock after it
const seenUpTo = new Array(n + 1).fill(0) // typist edits visible at client i
const samples = [] // [edit index, ms until visible] at every other client
let watchingCloses = false
let unplannedCloses = 0

const watch = (i, doc) => {
  doc.on('update', () => {
    const clock = Y.getState(doc.store, typistId)
    const now = performance.now()
    while (seenUpTo[i] < typed.length && typed[seenUpTo[i]].clock <= clock) {
      samples.push([seenUpTo[i], now - typed[seenUpTo[i]].at])
      seenUpTo[i]++
    }
  })
}
const connect = (i, doc) => {
  const provider = providerFor(i, doc)
  provider.on(hocuspocus ? 'disconnect' : 'connection-close', () => {
    if (watchingCloses) unplannedCloses++
  })
  return provider
}

const clients = [{ doc: typistDoc, provider: connect(0, typistDoc) }]
let joined = await until(() => isSynced(clients[0].provider), JOIN_LIMIT_MS)
// Joined one at a time, as in driver.mjs: the storm is the subject, not the first joins.
for (let i = 1; i <= n && joined; i++) {
  const doc = new Y.Doc()
  watch(i, doc)
  clients.push({ doc, provider: connect(i, doc) })
  joined = await until(() => isSynced(clients[i].provider), JOIN_LIMIT_MS)
}
const documentOk = joined && await until(
  () => clients.every((c) => c.doc.getText('t').length === expectedText.length),
  JOIN_LIMIT_MS,
) && clients.every((c) => c.doc.getText('t').toString() === expectedText)

let cursor = Math.floor(expectedText.length / 2)
let typing = documentOk
const typingStart = performance.now()
const eluStart = performance.eventLoopUtilization()
let eluBaseline = null
let eluResync = null
const typist = (async () => {
  for (let seq = 0; typing; seq++) {
    const tag = `<0.${seq}>`
    const at = performance.now()
    typistText.insert(cursor, tag)
    cursor += tag.length
    typed.push({ at, clock: Y.getState(typistDoc.store, typistId) })
    await sleep(typingStart + ((seq + 1) * 1000) / rate - performance.now())
  }
})()

let stormAt = null
let cpuAtStorm = null
let cpuAtResync = null
let closedAll = null
let reconnectAt = null
let before = 0
const syncedAt = new Array(n + 1).fill(null)
const caughtUpAt = new Array(n + 1).fill(null)
let resynced = false
if (documentOk) {
  await sleep(WARMUP_MS)
  stormAt = performance.now()
  cpuAtStorm = hubCpu()
  eluBaseline = performance.eventLoopUtilization(eluStart)
  const sockets = clients.slice(1).map((c) => socketOf(c.provider))
  for (const c of clients.slice(1)) {
    if (fresh) c.provider.destroy()
    else c.provider.disconnect()
  }
  await until(() => sockets.every((ws) => !ws || ws.readyState === WebSocket.CLOSED), CLOSE_LIMIT_MS)
  closedAll = performance.now()
  reconnectAt = performance.now()
  before = typed.length
  watchingCloses = true
  const eluReconnect = performance.eventLoopUtilization()
  for (let i = 1; i <= n; i++) {
    const c = clients[i]
    if (fresh) {
      c.doc.destroy()
      c.doc = new Y.Doc()
      watch(i, c.doc)
      c.provider = connect(i, c.doc)
    } else {
      c.provider.connect()
    }
  }
  const checker = setInterval(() => {
    const now = performance.now()
    for (let i = 1; i <= n; i++) {
      const synced = isSynced(clients[i].provider)
      if (syncedAt[i] === null && synced) syncedAt[i] = now
      if (caughtUpAt[i] === null && synced && seenUpTo[i] >= before) caughtUpAt[i] = now
    }
  }, 2)
  resynced = await until(() => caughtUpAt.every((t, i) => i === 0 || t !== null), RESYNC_LIMIT_MS)
  clearInterval(checker)
  eluResync = performance.eventLoopUtilization(eluReconnect)
  cpuAtResync = hubCpu()
  await sleep(stormAt + STORM_MS - performance.now())
}
typing = false
await typist
const typingEnd = performance.now()
const settled = documentOk && await until(
  () => seenUpTo.every((s, i) => i === 0 || s >= typed.length),
  SETTLE_LIMIT_MS,
)
const end = performance.now()
watchingCloses = false
const final = typistText.toString()
const textsEqual = clients.every((c) => c.doc.getText('t').toString() === final)

const pct = (values, p) => {
  if (!values.length) return null
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}
const inStorm = (k) => stormAt !== null && typed[k].at >= stormAt - IN_FLIGHT_MS
const during = samples.filter(([k]) => inStorm(k)).map(([, ms]) => ms)
const baseline = samples.filter(([k]) => !inStorm(k)).map(([, ms]) => ms)
const latest = (times) => (times.slice(1).every((t) => t !== null)
  ? (Math.max(...times.slice(1)) - reconnectAt) / 1000
  : null)
if (process.env.CRDTDOC_STORM_DEBUG) { // per typist edit: typed at (ms from the storm), worst ms
  const worst = typed.map(() => 0)
  for (const [k, ms] of samples) worst[k] = Math.max(worst[k], ms)
  const rel = (t) => Math.round(t - (stormAt ?? typingStart))
  process.stderr.write(typed.map((t, k) => `${k}@${rel(t.at)}:${Math.round(worst[k])}`).join(' ') + '\n')
  process.stderr.write(`reconnect at ${rel(reconnectAt ?? 0)}, synced: ${syncedAt.slice(1).map((t) => t === null ? '-' : rel(t)).join(' ')}\n`)
}
process.stdout.write(JSON.stringify({
  converged: documentOk && resynced && settled && textsEqual,
  document_ok: documentOk,
  document_chars: expectedText.length,
  document_update_bytes: update.length,
  variant,
  seconds: (end - typingStart) / 1000,
  edits: typed.length,
  updates_per_s: typed.length / ((typingEnd - typingStart) / 1000),
  close_all_s: closedAll === null ? null : (closedAll - stormAt) / 1000,
  step2_all_s: reconnectAt === null ? null : latest(syncedAt),
  sync_all_s: reconnectAt === null ? null : latest(caughtUpAt),
  sync_median_s: caughtUpAt.slice(1).every((t) => t !== null)
    ? (pct(caughtUpAt.slice(1), 0.5) - reconnectAt) / 1000
    : null,
  missed_before_reconnect: before - (stormAt === null ? 0 : typed.filter((t) => t.at < stormAt).length),
  p50_ms: pct(during, 0.5),
  p99_ms: pct(during, 0.99),
  typist_p50_ms: pct(during, 0.5),
  typist_p99_ms: pct(during, 0.99),
  max_ms: during.length ? Math.max(...during) : null,
  baseline_p99_ms: pct(baseline, 0.99),
  unplanned_closes: unplannedCloses,
  // the hub's CPU seconds from the disconnect until all were resynced
  hub_cpu_storm_s: cpuAtStorm !== null && cpuAtResync !== null ? cpuAtResync - cpuAtStorm : null,
  // how busy this Node process (all the clients) was: near 1, the clients are the bottleneck
  driver_busy_baseline: eluBaseline && eluBaseline.utilization,
  driver_busy_resync: eluResync && eluResync.utilization,
  received: seenUpTo.reduce((x, y) => x + y, 0),
  expected: typed.length * n,
}) + '\n')
for (const c of clients) c.provider.destroy()
process.exit(0)

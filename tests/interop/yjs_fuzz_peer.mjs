// Randomized stock Yjs clients against a crdtdoc hub: proves the hub accepts whatever legal
// content real Yjs clients produce. Driven by tests/interop/test_yjs_fuzz.py.
//
//   node yjs_fuzz_peer.mjs fuzz URL ROOM SEED [--clients N] [--ops N] [--without KIND,...]
//     N stock Y.Docs (each with its own y-websocket WebsocketProvider on ROOM) make N seeded
//     random edits of Yjs's own kinds (modelled on Yjs's randomized tests: y-text, y-array,
//     y-map; and XML), with undo/redo, subdocuments, edits through stale handles of deleted
//     types, and providers going offline and back (concurrent offline edits; a nested type
//     deleted by one client while another, offline, edits inside it: garbage-collected ranges).
//     Then all reconnect, and once every client holds the same state (state vector, delete set,
//     rendering of every root) it prints one JSON object on stdout: {seed, ops, tally, races,
//     converged, stateVector, deleteSet, rendering, clients: [{clientID, ops, stateVector,
//     rendering, closes, errors, gcRanges}], ...}. `closes` lists every closed websocket: the
//     ones we closed (disconnect()) have "local": true; any other came from the hub (a refusal
//     is a 4xxx/1007/1008/1011 code with a reason). KINDs to leave out: xmlhook, bigint,
//     subdoc-meta (test_yjs_fuzz.py says why).
//   node yjs_fuzz_peer.mjs read URL ROOM
//     one fresh stock client syncs and prints {stateVector, deleteSet, rendering, closes}.
//   node yjs_fuzz_peer.mjs single URL ROOM KIND
//     one client makes one edit of a left-out KIND, a fresh one reads: {writer, reader}.
//   node yjs_fuzz_peer.mjs updates SEED [--ops N] [--without KIND,...]
//     no network: one client's random edits, one {op, update (base64)} line per transaction,
//     for finding which edit a hub refuses.
//
// The seed fixes every random choice; the interleaving with the network does not repeat exactly.
// Text positions always fall on code point boundaries: an update that splits a surrogate pair is
// refused by every crdtdoc replica (rule 'surrogate pair'), and this test expects no refusal.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

// Resolves once written: process.exit() would cut a large write to a pipe short.
const say = (obj) => new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const tick = () => new Promise((resolve) => setImmediate(resolve))

// -- seeded randomness (mulberry32) ---------------------------------------------------------

const makeRandom = (seed) => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) // inclusive
  const pick = (list) => list[int(0, list.length - 1)]
  const chance = (p) => next() < p
  const weighted = (entries) => { // [[weight, value], ...]
    let total = 0
    for (const [w] of entries) total += w
    let r = next() * total
    for (const [w, v] of entries) {
      r -= w
      if (r < 0) return v
    }
    return entries[entries.length - 1][1]
  }
  return { next, int, pick, chance, weighted }
}

// Content kinds left out of a run (`--without xmlhook`): see test_yjs_fuzz.py for why.
const WITHOUT = new Set()

// -- the documents' roots -------------------------------------------------------------------

const ROOTS = [
  ['text', Y.Text],
  ['quill', Y.Text],
  ['map', Y.Map],
  ['métadonnées', Y.Map],
  ['array', Y.Array],
  ['xml', Y.XmlFragment]
]
const roots = (doc) => ROOTS.map(([name, kind]) => doc.get(name, kind))

const kindOf = (type) => {
  if (type instanceof Y.XmlText) return 'xmltext'
  if (type instanceof Y.Text) return 'text'
  if (type instanceof Y.XmlElement) return 'xmlelement'
  if (type instanceof Y.XmlFragment) return 'xmlfragment'
  if (type instanceof Y.XmlHook) return 'xmlhook'
  if (type instanceof Y.Map) return 'map'
  if (type instanceof Y.Array) return 'array'
  return 'unknown'
}

// -- a canonical rendering of everything (compared between clients and across a hub restart)

const canon = (v) => {
  if (v === undefined) return { $undefined: true }
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v
  if (typeof v === 'number') return Number.isFinite(v) ? v : { $number: String(v) }
  if (typeof v === 'bigint') return { $bigint: v.toString() }
  if (v instanceof Uint8Array) return { $bytes: Array.from(v) }
  if (v instanceof Y.Doc) {
    return { $subdoc: v.guid, meta: canon(v.meta), gc: v.gc, autoLoad: v.autoLoad }
  }
  if (v instanceof Y.AbstractType) return renderType(v)
  if (Array.isArray(v)) return v.map(canon)
  if (typeof v === 'object') {
    const out = {}
    for (const key of Object.keys(v).sort()) out[key] = canon(v[key])
    return out
  }
  return { $unexpected: String(v) }
}

const renderEntries = (entries) => {
  const out = {}
  for (const [key, value] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    out[key] = canon(value)
  }
  return out
}

const renderType = (type) => {
  const kind = kindOf(type)
  switch (kind) {
    case 'text':
    case 'xmltext':
      return {
        $type: kind,
        attrs: renderEntries(Object.entries(type.getAttributes())),
        delta: type.toDelta().map((op) => op.attributes
          ? { insert: canon(op.insert), attributes: canon(op.attributes) }
          : { insert: canon(op.insert) })
      }
    case 'map':
      return { $type: kind, entries: renderEntries(type.entries()) }
    case 'xmlhook':
      return { $type: kind, hook: type.hookName, entries: renderEntries(type.entries()) }
    case 'array':
      return { $type: kind, items: type.toArray().map(canon) }
    case 'xmlfragment':
      return { $type: kind, children: type.toArray().map(canon) }
    case 'xmlelement':
      return {
        $type: kind,
        name: type.nodeName,
        attrs: renderEntries(Object.entries(type.getAttributes())),
        children: type.toArray().map(canon)
      }
    default:
      return { $type: kind }
  }
}

const render = (doc) => JSON.stringify(ROOTS.map(([name, kind]) => [name, renderType(doc.get(name, kind))]))
const stateVector = (doc) => Object.fromEntries(Y.decodeStateVector(Y.encodeStateVector(doc)))
// The delete set, as {client: [[clock, len], ...]} (merged ranges, sorted).
const deleteSet = (doc) => Object.fromEntries([...Y.snapshot(doc).ds.clients.entries()]
  .map(([client, items]) => [client, items.map((i) => [i.clock, i.len])]))
const deleteSetKey = (doc) => JSON.stringify(Object.entries(deleteSet(doc)).sort((a, b) => a[0] - b[0]))
// Structs replaced by GC (deleted content of deleted types): the ranges the hub's gate must read.
const gcRanges = (doc) => {
  let n = 0
  for (const structs of doc.store.clients.values()) for (const s of structs) if (s instanceof Y.GC) n++
  return n
}

// Items whose origin is their right origin: no correct insertion makes one, yet Yjs can (see
// test_yjs_fuzz.py); where they are, clients may order the same items differently.
const selfOriginItems = (doc) => {
  const found = []
  for (const structs of doc.store.clients.values()) {
    for (const s of structs) {
      const o = s.origin
      const r = s.rightOrigin
      if (o && r && o.client === r.client && o.clock === r.clock) found.push(`${s.id.client}:${s.id.clock}`)
    }
  }
  return found
}

// -- the clients ----------------------------------------------------------------------------

const connectClient = (url, room, docOptions) => {
  const doc = new Y.Doc(docOptions)
  // disableBc: Node has BroadcastChannel, and clients in one process would otherwise sync
  // directly, around the hub (and around disconnect()).
  const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  const client = { doc, provider, closes: [], errors: [], ops: 0, handles: [], deleted: [], undo: null }
  provider.on('connection-close', (event) => {
    if (event === null) client.closes.push({ local: true, code: null, reason: '' })
    else client.closes.push({ local: false, code: event.code, reason: String(event.reason || ''), at: client.ops })
  })
  provider.on('closed', (event) => {
    client.errors.push(`provider closed for good by the hub: ${event.code} ${event.reason}`)
  })
  return client
}

const synced = (client) => client.provider.wsconnected && client.provider.synced

const waitFor = async (check, timeoutMs, what) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

// -- random content -------------------------------------------------------------------------

const WORDS = ['a', 'lorem', 'ipsum', 'héllo', 'ünïcödé', '中文', '😀', '👩‍👩‍👧', 'ß', 'x y', '\n', 'ẞ𝒳', 'Ω', '\t']
const KEYS = ['a', 'b', 'c', 'd', 'ключ', '😀', '', 'long-key-name']
const marks = [{ bold: true }, { italic: true }, { italic: true, color: '#888' }, { link: { href: 'https://example.com/ü' } }, { size: 12 }]
const marksChoices = [undefined, undefined, ...marks, { bold: null }]

const makeContent = (rnd) => {
  let counter = 0
  const word = () => `${counter++}${rnd.pick(WORDS)}`
  const string = () => rnd.weighted([[6, () => word()], [1, () => ''], [1, () => '😀👍🏽'], [1, () => `${word()} ${word()}`]])()
  const number = () => rnd.pick([
    () => rnd.int(-1000, 1000), () => rnd.next() * 1000, () => 2 ** 40 + rnd.int(0, 99),
    () => -(2 ** 31) - 5, () => 2 ** 31, () => 0.1, () => Number.MAX_SAFE_INTEGER, () => 1e-300
  ])()
  const bytes = () => Uint8Array.from({ length: rnd.int(0, 6) }, () => rnd.int(0, 255))
  const json = (depth = 0) => rnd.weighted([
    [3, () => number()], [3, () => string()], [1, () => rnd.chance(0.5)], [1, () => null],
    [depth < 2 ? 1 : 0, () => ({ [rnd.pick(KEYS)]: json(depth + 1), n: number() })],
    [depth < 2 ? 1 : 0, () => Array.from({ length: rnd.int(0, 3) }, () => json(depth + 1))],
    [depth > 0 ? 1 : 0, () => bytes()] // Uint8Array inside an object or array (lib0 "any")
  ])()
  // A value Y.Map.set accepts as plain content: json, bytes (ContentBinary), bigint, undefined.
  const mapValue = () => rnd.weighted([
    [8, () => json()], [1, () => bytes()], [1, () => undefined],
    [WITHOUT.has('bigint') ? 0 : 1, () => BigInt(rnd.int(-5, 5)) * 1234567890123n]
  ])()
  // Options of a subdocument (a Y.Doc as a value): guid always; meta, autoLoad, gc sometimes.
  const subdoc = () => new Y.Doc(rnd.weighted([
    [2, {}], [1, { autoLoad: true }], [1, { gc: false }],
    [WITHOUT.has('subdoc-meta') ? 0 : 2, { meta: { title: string(), n: number() } }]
  ]))
  return { word, string, number, bytes, json, mapValue, subdoc }
}

// A fresh (preliminary) Yjs type and a function that fills it once it is integrated (within
// the same transaction), as Yjs's own randomized tests do.
const makeType = (rnd, content, depth) => {
  const kind = rnd.weighted([
    [4, 'map'], [3, 'array'], [3, 'text'], [1, 'xmlfragment'], [1, 'xmlelement'], [1, 'xmltext'],
    [WITHOUT.has('xmlhook') ? 0 : 1, 'xmlhook']
  ])
  const type = {
    map: () => new Y.Map(),
    array: () => new Y.Array(),
    text: () => new Y.Text(),
    xmlfragment: () => new Y.XmlFragment(),
    xmlelement: () => new Y.XmlElement(rnd.pick(['p', 'h1', 'li', 'custom-élément'])),
    xmltext: () => new Y.XmlText(),
    xmlhook: () => new Y.XmlHook(rnd.pick(['hook', 'embed-hook']))
  }[kind]()
  const nested = (insert) => {
    if (depth < 2 && rnd.chance(0.3)) {
      const inner = makeType(rnd, content, depth + 1)
      insert(inner.type)
      inner.fill()
    }
  }
  const fill = () => {
    switch (kind) {
      case 'map':
      case 'xmlhook':
        type.set(rnd.pick(KEYS), content.mapValue())
        nested((t) => type.set(rnd.pick(KEYS), t))
        break
      case 'array':
        type.insert(0, [content.json(), content.json()])
        nested((t) => type.insert(type.length, [t]))
        break
      case 'text':
      case 'xmltext':
        type.insert(0, content.string(), rnd.pick(marksChoices))
        nested((t) => type.insertEmbed(type.length, t))
        break
      case 'xmlfragment':
      case 'xmlelement': {
        const text = new Y.XmlText()
        type.insert(0, [text])
        text.insert(0, content.string())
        if (kind === 'xmlelement') type.setAttribute('class', content.string())
        break
      }
    }
  }
  return { type, fill }
}

// -- positions that never split a surrogate pair ---------------------------------------------

// Text positions in units Yjs counts (UTF-16 units; an embed counts 1): the ones inside a pair.
const insidePairs = (ytext) => {
  const inside = new Set()
  let pos = 0
  for (const op of ytext.toDelta()) {
    if (typeof op.insert === 'string') {
      const s = op.insert
      for (let j = 1; j < s.length; j++) {
        const hi = s.charCodeAt(j - 1)
        const lo = s.charCodeAt(j)
        if (hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) inside.add(pos + j)
      }
      pos += s.length
    } else {
      pos += 1
    }
  }
  return inside
}
const align = (inside, pos) => (inside.has(pos) ? pos - 1 : pos)

// -- operations -----------------------------------------------------------------------------

// Every live type reachable from the roots (for choosing where to edit).
const liveTypes = (doc) => {
  const found = []
  const visit = (type) => {
    found.push(type)
    const kind = kindOf(type)
    const children = []
    if (kind === 'map' || kind === 'xmlhook') children.push(...type.values())
    if (kind === 'array' || kind === 'xmlfragment' || kind === 'xmlelement') children.push(...type.toArray())
    if (kind === 'text' || kind === 'xmltext') children.push(...type.toDelta().map((op) => op.insert))
    if (kind === 'xmlelement' || kind === 'text' || kind === 'xmltext') children.push(...Object.values(type.getAttributes()))
    for (const child of children) if (child instanceof Y.AbstractType) visit(child)
  }
  for (const root of roots(doc)) visit(root)
  return found
}

const insertType = (rnd, content, insert) => {
  const { type, fill } = makeType(rnd, content, 0)
  insert(type)
  fill()
  return type
}

const textOps = (rnd, content, client, ytext) => {
  const inside = insidePairs(ytext)
  const len = ytext.length
  const pos = () => align(inside, rnd.int(0, len))
  const range = (max) => {
    const start = align(inside, rnd.int(0, len))
    const end = align(inside, Math.min(len, start + rnd.int(0, max)))
    return [start, Math.max(0, end - start)]
  }
  return [
    [8, 'text.insert', () => ytext.insert(pos(), content.string(), rnd.pick(marksChoices))],
    [2, 'text.insert-emoji', () => ytext.insert(pos(), rnd.pick(['😀', '👩‍👩‍👧', '🇫🇷', 'a😀b', '𝒳𝒴']), rnd.pick(marksChoices))],
    [5, 'text.delete', () => { const [at, n] = range(6); ytext.delete(at, n) }],
    [4, 'text.format', () => { const [at, n] = range(8); ytext.format(at, n, rnd.pick([...marks, { bold: null }, { italic: null, color: null }])) }],
    [2, 'text.insertEmbed-object', () => ytext.insertEmbed(pos(), rnd.pick([{ image: 'https://example.com/a.png' }, { formula: 'e=mc²' }, { video: { src: 'x', n: 1 } }]), rnd.pick(marksChoices))],
    [2, 'text.insertEmbed-type', () => { const at = pos(); insertType(rnd, content, (t) => ytext.insertEmbed(at, t, rnd.pick(marksChoices))) }],
    [2, 'text.applyDelta-codeblock', () => {
      const at = pos()
      ytext.applyDelta([...(at > 0 ? [{ retain: at }] : []), { insert: content.string() }, { insert: '\n', attributes: { 'code-block': true } }])
    }],
    [2, 'text.applyDelta-complex', () => {
      let at = pos()
      const ops = at > 0 ? [{ retain: at }] : []
      for (let i = 0; i < 4 && at < len; i++) {
        const step = rnd.pick(['format', 'insert', 'delete'])
        if (step === 'insert') {
          const attrs = rnd.pick(marksChoices)
          ops.push(attrs ? { insert: content.word(), attributes: attrs } : { insert: content.word() })
        } else {
          const n = align(inside, Math.min(len, at + rnd.int(0, 5))) - at
          if (n <= 0) continue
          ops.push(step === 'format' ? { retain: n, attributes: rnd.pick(marks) } : { delete: n })
          at += n
        }
      }
      ytext.applyDelta(ops)
    }],
    [1, 'text.setAttribute', () => ytext.setAttribute(rnd.pick(KEYS), content.mapValue())],
    [1, 'text.removeAttribute', () => ytext.removeAttribute(rnd.pick(KEYS))]
  ]
}

const mapOps = (rnd, content, client, ymap) => {
  const existing = [...ymap.keys()]
  return [
    [6, 'map.set', () => ymap.set(rnd.pick(KEYS), content.mapValue())],
    [2, 'map.set-bytes', () => ymap.set(rnd.pick(KEYS), content.bytes())],
    [4, 'map.set-type', () => insertType(rnd, content, (t) => ymap.set(rnd.pick(KEYS), t))],
    [1, 'map.set-subdoc', () => ymap.set(rnd.pick(KEYS), content.subdoc())],
    [existing.length ? 3 : 0, 'map.delete', () => { const key = rnd.pick(existing); deleteNested(client, () => ymap.get(key), () => ymap.delete(key)) }],
    [existing.length ? 3 : 0, 'map.overwrite', () => ymap.set(rnd.pick(existing), rnd.chance(0.5) ? content.mapValue() : makeType(rnd, content, 1).type)]
  ]
}

const arrayOps = (rnd, content, client, yarray) => {
  const len = yarray.length
  return [
    [5, 'array.insert', () => yarray.insert(rnd.int(0, len), Array.from({ length: rnd.int(1, 4) }, () => content.json()))],
    [2, 'array.push', () => yarray.push([content.json(), content.bytes()])],
    [1, 'array.unshift', () => yarray.unshift([content.json()])],
    [3, 'array.insert-type', () => insertType(rnd, content, (t) => yarray.insert(rnd.int(0, len), [t]))],
    [1, 'array.insert-mixed', () => yarray.insert(rnd.int(0, len), [content.json(), new Y.Map([['k', content.json()]]), content.bytes(), null, new Y.Text('t' + content.word())])],
    [1, 'array.insert-subdoc', () => yarray.insert(rnd.int(0, len), [content.subdoc()])],
    [len ? 4 : 0, 'array.delete', () => {
      const at = rnd.int(0, len - 1)
      const n = rnd.int(1, Math.min(3, len - at))
      deleteNested(client, () => yarray.get(at), () => yarray.delete(at, n))
    }]
  ]
}

const xmlOps = (rnd, content, client, node) => {
  const len = node.length
  const element = () => new Y.XmlElement(rnd.pick(['p', 'div', 'span', 'ul', 'li', 'h2']))
  const ops = [
    [4, 'xml.insert-element', () => {
      const el = element()
      node.insert(rnd.int(0, len), [el])
      el.setAttribute(rnd.pick(['id', 'class', 'data-x']), content.string())
      if (rnd.chance(0.5)) {
        const child = new Y.XmlText()
        el.insert(0, [child])
        child.insert(0, content.string(), rnd.pick(marksChoices))
      }
      if (rnd.chance(0.3)) el.insert(el.length, [element()])
    }],
    [3, 'xml.insert-text', () => {
      const text = new Y.XmlText()
      node.insert(rnd.int(0, len), [text])
      text.insert(0, content.string(), rnd.pick(marksChoices))
      if (rnd.chance(0.3)) text.format(0, 1, rnd.pick(marks))
    }],
    [WITHOUT.has('xmlhook') ? 0 : 1, 'xml.insert-hook', () => {
      const hook = new Y.XmlHook('hook')
      node.insert(rnd.int(0, len), [hook])
      hook.set('k', content.json())
    }],
    [len ? 3 : 0, 'xml.delete', () => {
      const at = rnd.int(0, len - 1)
      const n = rnd.int(1, Math.min(2, len - at))
      deleteNested(client, () => node.get(at), () => node.delete(at, n))
    }]
  ]
  if (node instanceof Y.XmlElement) {
    const attrs = Object.keys(node.getAttributes())
    ops.push([3, 'xml.setAttribute', () => node.setAttribute(rnd.pick(['id', 'class', 'data-x', 'href', 'style']), rnd.chance(0.8) ? content.string() : content.json())])
    ops.push([attrs.length ? 2 : 0, 'xml.removeAttribute', () => node.removeAttribute(rnd.pick(attrs))])
    ops.push([1, 'xml.setAttribute-type', () => insertType(rnd, content, (t) => node.setAttribute('data-type', t))])
  }
  return ops
}

// Deletes (through `del`) and remembers the type that was there, if any: later edits through
// that stale handle are edits inside a deleted (and garbage-collected) type, as an editor
// binding holding the handle would make.
const deleteNested = (client, get, del) => {
  const before = get()
  del()
  if (before instanceof Y.AbstractType) client.deleted.push(before)
}

const opsFor = (rnd, content, client, type) => {
  switch (kindOf(type)) {
    case 'text':
    case 'xmltext':
      return textOps(rnd, content, client, type)
    case 'map':
    case 'xmlhook':
      return mapOps(rnd, content, client, type)
    case 'array':
      return arrayOps(rnd, content, client, type)
    case 'xmlfragment':
    case 'xmlelement':
      return xmlOps(rnd, content, client, type)
    default:
      return []
  }
}

// One random edit on `client`: on a live type, on a type it edited before (a handle an editor
// binding would keep, maybe deleted since), or on a type it deleted. Returns the edit's name.
const randomEdit = (rnd, content, client) => {
  let target
  const source = rnd.weighted([[70, 'live'], [20, 'handle'], [10, 'deleted']])
  if (source === 'handle' && client.handles.length) target = rnd.pick(client.handles)
  else if (source === 'deleted' && client.deleted.length) target = rnd.pick(client.deleted)
  else {
    const live = liveTypes(client.doc)
    // favour nested types: they are where concurrent deletion and editing meet
    target = rnd.chance(0.5) && live.length > ROOTS.length ? rnd.pick(live.slice(ROOTS.length)) : rnd.pick(live)
  }
  const choices = opsFor(rnd, content, client, target).filter(([w]) => w > 0)
  if (choices.length === 0) return null
  const [, name, run] = rnd.weighted(choices.map((c) => [c[0], c]))
  // an edit inside a deleted type (deleted here or by another client): its content is GC'd
  const stale = target._item !== null && target._item.deleted
  run()
  if (target._item !== null && !client.handles.includes(target)) {
    client.handles.push(target)
    if (client.handles.length > 30) client.handles.shift()
  }
  if (client.deleted.length > 30) client.deleted.shift()
  return (stale ? 'stale:' : '') + name
}

// -- the run --------------------------------------------------------------------------------

const fuzz = async (url, room, seed, clientCount, totalOps) => {
  const rnd = makeRandom(seed)
  const content = makeContent(rnd)
  const started = Date.now()
  // One client keeps its deleted content (gc: false), as a versioning app would.
  const clients = Array.from({ length: clientCount }, (_, i) => connectClient(url, room, i === 0 ? { gc: false } : {}))
  await waitFor(() => clients.every(synced), 20000, 'the first sync')
  for (const client of clients) {
    client.undo = new Y.UndoManager(client.doc, { captureTimeout: rnd.pick([0, 0, 500]) })
  }
  const tally = {}
  const count = (name) => { tally[name] = (tally[name] || 0) + 1 }
  let ops = 0
  let step = 0
  let races = 0
  const selfOriginBy = {} // which of our steps made the self-origin items (see selfOriginItems)
  while (ops < totalOps) {
    step++
    const client = rnd.pick(clients)
    const provider = client.provider
    const roll = rnd.next()
    const clockBefore = Y.getState(client.doc.store, client.doc.clientID)
    const tallyBefore = { ...tally }
    if (roll < 0.02) { // a provider goes offline or comes back
      if (provider.shouldConnect) { provider.disconnect(); count('disconnect') } else { provider.connect(); count('reconnect') }
    } else if (roll < 0.025) { // the race: B deletes a nested type while A, offline, edits inside it
      const others = clients.filter((c) => c !== client)
      const b = rnd.pick(others)
      const shared = liveTypes(client.doc).slice(ROOTS.length).filter((t) => t._item !== null)
      if (shared.length) {
        const victim = rnd.pick(shared)
        const id = victim._item.id
        if (provider.shouldConnect) provider.disconnect()
        for (let i = 0; i < rnd.int(3, 8); i++) {
          const choices = opsFor(rnd, content, client, victim).filter(([w]) => w > 0)
          if (choices.length === 0) break
          try {
            client.doc.transact(() => rnd.weighted(choices.map((c) => [c[0], c]))[2]())
            ops++
            client.ops++
            count('race:edit-inside')
          } catch (error) {
            client.errors.push(`race edit: ${error.stack || error}`)
          }
        }
        // b deletes the victim (or its parent's entry for it) if b sees it
        const item = liveTypes(b.doc).find((t) => t._item && t._item.id.client === id.client && t._item.id.clock === id.clock)
        if (item && item._item.parentSub !== null) { // a map entry, or an attribute
          const key = item._item.parentSub
          const parent = item.parent
          deleteNested(b, () => item, () => parent instanceof Y.Map ? parent.delete(key) : parent.removeAttribute(key))
          count('race:delete-parent-entry')
        } else if (item) {
          const parent = item.parent
          const index = parent.toArray ? parent.toArray().indexOf(item) : -1
          if (index >= 0) {
            deleteNested(b, () => item, () => parent.delete(index, 1))
            count('race:delete-parent-entry')
          } else if (parent instanceof Y.Text) {
            let at = 0
            for (const op of parent.toDelta()) {
              if (op.insert === item) break
              at += typeof op.insert === 'string' ? op.insert.length : 1
            }
            deleteNested(b, () => item, () => parent.delete(at, 1))
            count('race:delete-parent-entry')
          }
        }
        races++
      }
    } else if (roll < 0.04) { // undo / redo
      try {
        if (rnd.chance(0.6)) { client.undo.undo(); count('undo') } else { client.undo.redo(); count('redo') }
      } catch (error) {
        client.errors.push(`undo/redo: ${error.stack || error}`)
      }
    } else { // one edit, or a few in one transaction
      const n = rnd.chance(0.15) ? rnd.int(2, 4) : 1
      try {
        client.doc.transact(() => {
          for (let i = 0; i < n; i++) {
            const name = randomEdit(rnd, content, client)
            if (name !== null) {
              count(name)
              ops++
              client.ops++
            }
          }
        })
      } catch (error) {
        client.errors.push(`edit: ${error.stack || error}`)
      }
    }
    const made = (client.doc.store.clients.get(client.doc.clientID) || []).filter((it) => it.id.clock >= clockBefore)
    if (selfOriginItems({ store: { clients: new Map([[0, made]]) } }).length) {
      const names = Object.keys(tally).filter((k) => tally[k] !== tallyBefore[k]).join('+')
      selfOriginBy[names] = (selfOriginBy[names] || 0) + 1
    }
    await tick()
    if (step % 25 === 0) await sleep(rnd.int(0, 4))
  }
  const editedMs = Date.now() - started

  // Everyone back online; wait for one common state.
  for (const client of clients) if (!client.provider.shouldConnect) client.provider.connect()
  let converged = false
  const refused = () => clients.some((c) => c.closes.some((close) => !close.local && close.code !== 1000 && close.code !== 1001))
  const deadline = Date.now() + 30000
  const settled = Date.now() + 3000 // a refusing hub will not let them converge: stop sooner
  while (Date.now() < deadline && !(refused() && Date.now() > settled)) {
    if (clients.every(synced)) {
      const svs = clients.map((c) => JSON.stringify(stateVector(c.doc)))
      const renders = clients.map((c) => render(c.doc))
      const dss = clients.map((c) => deleteSetKey(c.doc))
      if (svs.every((s) => s === svs[0]) && renders.every((r) => r === renders[0]) && dss.every((d) => d === dss[0])) {
        converged = true
        break
      }
    }
    await sleep(50)
  }
  const result = {
    seed,
    clients: clients.map((c) => ({
      clientID: c.doc.clientID,
      gc: c.doc.gc,
      ops: c.ops,
      synced: synced(c),
      stateVector: stateVector(c.doc),
      gcRanges: gcRanges(c.doc),
      selfOriginItems: selfOriginItems(c.doc),
      rendering: render(c.doc),
      closes: c.closes,
      errors: c.errors,
      // when they differ: each client's whole state, to study offline
      ...(converged ? {} : { update: Buffer.from(Y.encodeStateAsUpdate(c.doc)).toString('base64'), deleteSet: deleteSet(c.doc) })
    })),
    ops,
    races,
    tally,
    selfOriginBy,
    converged,
    editedMs,
    totalMs: Date.now() - started,
    stateVector: stateVector(clients[0].doc),
    deleteSet: deleteSet(clients[0].doc),
    rendering: render(clients[0].doc)
  }
  for (const c of clients) c.provider.destroy()
  return result
}

const read = async (url, room) => {
  const client = connectClient(url, room, {})
  await waitFor(() => synced(client), 20000, 'the sync of a fresh client')
  // the step 2 answer is applied by now; give a moment for anything still in flight
  await sleep(200)
  const result = { stateVector: stateVector(client.doc), deleteSet: deleteSet(client.doc), rendering: render(client.doc), closes: client.closes }
  client.provider.destroy()
  return result
}

// One writer makes one edit of a kind the hub is known to mishandle; a fresh reader joins.
const SINGLE_EDITS = {
  xmlhook: (doc) => { const hook = new Y.XmlHook('hook'); doc.getXmlFragment('xml').insert(0, [hook]); hook.set('k', 1) },
  bigint: (doc) => doc.getMap('map').set('big', 1234567890123n),
  'subdoc-meta': (doc) => doc.getMap('map').set('sub', new Y.Doc({ meta: { title: 'notes' } }))
}
const single = async (url, room, kind) => {
  if (!SINGLE_EDITS[kind]) throw new Error(`unknown kind ${kind}; one of ${Object.keys(SINGLE_EDITS)}`)
  const writer = connectClient(url, room, {})
  await waitFor(() => synced(writer), 20000, 'the writer\'s sync')
  SINGLE_EDITS[kind](writer.doc)
  await sleep(300) // the hub stores and relays it, or refuses it
  const reader = connectClient(url, room, {})
  const deadline = Date.now() + 3000
  const refused = () => writer.closes.some((close) => !close.local)
  while (Date.now() < deadline && !refused() && render(reader.doc) !== render(writer.doc)) await sleep(20)
  const result = {
    writer: { rendering: render(writer.doc), closes: writer.closes },
    reader: { rendering: render(reader.doc), closes: reader.closes }
  }
  writer.provider.destroy()
  reader.provider.destroy()
  return result
}

// No network: one client makes OPS random edits; prints one JSON line per transaction
// ({op, update} with the update in base64), for finding which edit a hub refuses.
const updates = (seed, totalOps) => {
  const rnd = makeRandom(seed)
  const content = makeContent(rnd)
  const client = { doc: new Y.Doc(), closes: [], errors: [], ops: 0, handles: [], deleted: [] }
  let last = null
  client.doc.on('update', (update) => { last = update })
  for (let i = 0; i < totalOps; i++) {
    last = null
    let name = null
    client.doc.transact(() => { name = randomEdit(rnd, content, client) })
    if (last !== null) process.stdout.write(JSON.stringify({ op: name, update: Buffer.from(last).toString('base64') }) + '\n')
  }
}

const usage = 'usage: yjs_fuzz_peer.mjs fuzz URL ROOM SEED [--clients N] [--ops N] [--without xmlhook]\n' +
  '       yjs_fuzz_peer.mjs read URL ROOM\n' +
  '       yjs_fuzz_peer.mjs single URL ROOM xmlhook|bigint|subdoc-meta\n' +
  '       yjs_fuzz_peer.mjs updates SEED [--ops N] [--without xmlhook]'
const options = (args) => {
  const positional = []
  const flags = { clients: 5, ops: 3000 }
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--clients' || args[i] === '--ops') flags[args[i].slice(2)] = Number(args[++i])
    else if (args[i] === '--without') for (const kind of args[++i].split(',')) WITHOUT.add(kind)
    else positional.push(args[i])
  }
  return { positional, flags }
}

try {
  const [mode, ...args] = process.argv.slice(2)
  const { positional, flags } = options(args)
  if (mode === 'fuzz' && positional.length === 3 && Number.isInteger(Number(positional[2]))) {
    const [url, room, seed] = positional
    process.stderr.write(`yjs fuzz seed ${seed}\n`)
    await say(await fuzz(url, room, Number(seed), flags.clients, flags.ops))
  } else if (mode === 'read' && positional.length === 2) {
    await say(await read(...positional))
  } else if (mode === 'single' && positional.length === 3) {
    await say(await single(...positional))
  } else if (mode === 'updates' && positional.length === 1) {
    updates(Number(positional[0]), flags.ops)
    await new Promise((resolve) => process.stdout.write('', resolve))
  } else {
    throw new Error(usage)
  }
  process.exit(0)
} catch (error) {
  process.stderr.write(`${error.stack || error}\n`)
  process.exit(1)
}

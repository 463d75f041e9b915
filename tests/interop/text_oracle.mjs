// The Yjs side of tests/interop/test_text_vs_yjs.py: a long-lived stock Yjs (npm yjs, from the
// lockfile beside this file) that answers one JSON line on stdout for each JSON line on stdin, so
// the Hypothesis examples do not each pay a Node start-up. Every answer is {"ok": ...} or
// {"error": message}; a command that throws never ends the process.
//
// Positions in commands count code points of the text as crdtdoc's Document.read() shows it: a
// character is 1 (an astral one too: 2 UTF-16 units in Yjs), an embed (insertEmbed, or an embedded
// shared type) is 1, a format is 0. They are converted here to the UTF-16 offsets Yjs takes, from
// the text's own toDelta(). Updates travel as base64.
//
// Commands (field "cmd"):
//   build {clients, ops}
//     Yjs clients (client ids 1001, 1002, ...) each with its own Y.Doc, editing the root text
//     "t"; ops apply in order, then all clients sync. An op's positions are raw non-negative
//     integers, reduced here modulo what fits the client's current text (so a generator need
//     not know the text). Ops (field "op", all with "client"):
//       insert {index, text, attrs|null}   ytext.insert (with attrs when given)
//       embed {index, value, attrs|null}   ytext.insertEmbed of a JSON value
//       type {index, kind: map|array|text} ytext.insertEmbed of a new shared type (with content)
//       format {index, length, attrs}      ytext.format
//       delete {index, length}             ytext.delete of whole characters and embeds
//       sync {}                            every client receives every other client's state
//     -> {update, view} for the synced text, where view (also in the answers below) is
//        {delta, kinds, string}: toDelta() with embedded shared types as their toJSON(), the kind
//        of each op's insert ("string" | "embed" | "type") and toString().
//   edit {base, updates, edits}
//     ours: a fresh Y.Doc applies base, then each of updates (crdtdoc's, in order).
//     theirs: another fresh Y.Doc, its text opened (getText) before it applies base, performs
//     edits itself: a list of [index, delete, insert] in code points of the base text, ordered
//     by index and not overlapping; applied right to left in one transaction as
//     ytext.delete(u16(index), u16 length of the deleted span) then ytext.insert(u16(index),
//     insert) without attributes: the inserted text takes the formatting before it.
//     stock: the same edits on a doc that applied base before opening its text. Yjs turns a
//     text's search markers (cached positions) off once it holds a format, as finding a
//     position from a marker forgets the formats before it (ContentFormat.integrate: "search
//     markers are currently unsupported for rich text documents"); but getText() after the
//     update re-creates the type with markers on. Edits of formatted text then depend on how its
//     items were made, not on what it reads: "hello world" with "hello" bold, insert(5, "X")
//     gives "X world" plain if the whole was typed and then formatted, "helloX" bold if "hello"
//     was typed bold; "aaa" with the first "a" bold, delete(1, 1) turns the last "a" bold
//     (cleanupFormattingGap, told the wrong formatting at the gap, deletes the format item that
//     ended the bold run). That is no contract to hold crdtdoc to: the test only reports it.
//     -> {ours: view, theirs: view, stock: view}
//   surrogate {half: "high" | "low"}
//     A client inserts "a😀b", then deletes half of the 😀 (one UTF-16 unit) by UTF-16 offset.
//     -> {insert, delete, merged, stored}: the two updates as emitted, Y.mergeUpdates of them (one
//        update holding the whole string item and a delete set covering half of the pair), and the
//        client's own encodeStateAsUpdate after the delete (Yjs replaced the split pair's halves by
//        U+FFFD there), plus view: how Yjs reads it.
import * as Y from 'yjs'
import { createInterface } from 'node:readline'

const b64 = (bytes) => Buffer.from(bytes).toString('base64')
const unb64 = (text) => new Uint8Array(Buffer.from(text, 'base64'))

// -- reading a text ----------------------------------------------------------------------------

const jsonOf = (value) => (value instanceof Y.AbstractType ? value.toJSON() : value)

const kindOfInsert = (insert) =>
  typeof insert === 'string' ? 'string' : insert instanceof Y.AbstractType ? 'type' : 'embed'

const view = (ytext) => {
  const delta = ytext.toDelta()
  return {
    delta: delta.map((op) => {
      const out = { insert: jsonOf(op.insert) }
      if (op.attributes !== undefined) out.attributes = op.attributes
      return out
    }),
    kinds: delta.map((op) => kindOfInsert(op.insert)),
    string: ytext.toString()
  }
}

// UTF-16 length of each code point position of the text: a character's own length (2 for an
// astral one), 1 for an embed. Lone surrogates (never made by this test) count 1 each, as
// for..of gives them.
const units = (ytext) => {
  const out = []
  for (const op of ytext.toDelta()) {
    if (typeof op.insert === 'string') {
      for (const ch of op.insert) out.push(ch.length)
    } else {
      out.push(1)
    }
  }
  return out
}

const u16 = (sizes, from, to) => {
  let n = 0
  for (let i = from; i < to; i++) n += sizes[i]
  return n
}

// -- building a base text ----------------------------------------------------------------------

const sharedType = (kind) => {
  if (kind === 'map') {
    const map = new Y.Map()
    map.set('k', 'v')
    map.set('n', 1)
    return map
  }
  if (kind === 'array') return Y.Array.from([1, 'two'])
  if (kind === 'text') return new Y.Text('sub')
  throw new Error(`unknown shared type ${kind}`)
}

const syncAll = (docs) => {
  const states = docs.map((doc) => Y.encodeStateAsUpdate(doc))
  for (const doc of docs) {
    for (const state of states) Y.applyUpdate(doc, state)
  }
}

const applyOp = (docs, op) => {
  if (op.op === 'sync') {
    syncAll(docs)
    return
  }
  const doc = docs[op.client % docs.length]
  const ytext = doc.getText('t')
  const sizes = units(ytext)
  const n = sizes.length
  const at = op.index % (n + 1)
  const offset = u16(sizes, 0, at)
  const attrs = op.attrs ?? undefined
  switch (op.op) {
    case 'insert':
      if (attrs === undefined) ytext.insert(offset, op.text)
      else ytext.insert(offset, op.text, attrs)
      return
    case 'embed':
      ytext.insertEmbed(offset, op.value, attrs)
      return
    case 'type':
      ytext.insertEmbed(offset, sharedType(op.kind), attrs)
      return
    case 'format':
    case 'delete': {
      const length = op.length % (n - at + 1)
      if (length === 0) return
      if (op.op === 'format') ytext.format(offset, u16(sizes, at, at + length), op.attrs)
      else ytext.delete(offset, u16(sizes, at, at + length))
      return
    }
    default:
      throw new Error(`unknown op ${op.op}`)
  }
}

const build = ({ clients, ops }) => {
  const docs = []
  for (let i = 0; i < clients; i++) {
    const doc = new Y.Doc()
    doc.clientID = 1001 + i
    doc.getText('t') // opened before any update arrives, as an editor's is (see stock above)
    docs.push(doc)
  }
  for (const op of ops) applyOp(docs, op)
  syncAll(docs)
  return { update: b64(Y.encodeStateAsUpdate(docs[0])), view: view(docs[0].getText('t')) }
}

// -- an edit, by crdtdoc and by Yjs ------------------------------------------------------------

// A Y.Doc holding base. opened: its text is opened first, as an editor bound to it does (see
// stock above for what the other order does).
const docFrom = (base, clientID, opened) => {
  const doc = new Y.Doc()
  doc.clientID = clientID
  if (opened) doc.getText('t')
  Y.applyUpdate(doc, unb64(base))
  return doc
}

const perform = (doc, edits) => {
  const ytext = doc.getText('t')
  const sizes = units(ytext)
  let last = sizes.length
  for (const [index, del] of edits) {
    if (!(index >= 0 && del >= 0 && index + del <= sizes.length)) {
      throw new Error(`edit ${index} ${del} outside the text (${sizes.length})`)
    }
  }
  doc.transact(() => {
    for (let i = edits.length - 1; i >= 0; i--) {
      const [index, del, insert] = edits[i]
      if (index + del > last) throw new Error('edits overlap or are not ordered')
      last = index
      const offset = u16(sizes, 0, index)
      if (del > 0) ytext.delete(offset, u16(sizes, index, index + del))
      if (insert.length > 0) ytext.insert(offset, insert)
    }
  })
  return view(ytext)
}

const edit = ({ base, updates, edits }) => {
  const ours = docFrom(base, 2001, true)
  for (const update of updates) Y.applyUpdate(ours, unb64(update))
  return {
    ours: view(ours.getText('t')),
    theirs: perform(docFrom(base, 2002, true), edits),
    stock: perform(docFrom(base, 2003, false), edits)
  }
}

// -- half of a surrogate pair ------------------------------------------------------------------

const surrogate = ({ half }) => {
  const doc = new Y.Doc()
  doc.clientID = 3001
  const emitted = []
  doc.on('update', (update) => emitted.push(update))
  const ytext = doc.getText('t')
  ytext.insert(0, 'a😀b')
  ytext.delete(half === 'high' ? 1 : 2, 1)
  if (emitted.length !== 2) throw new Error(`expected two updates, got ${emitted.length}`)
  return {
    insert: b64(emitted[0]),
    delete: b64(emitted[1]),
    merged: b64(Y.mergeUpdates(emitted)),
    stored: b64(Y.encodeStateAsUpdate(doc)),
    view: view(ytext)
  }
}

// -- the loop ----------------------------------------------------------------------------------

const COMMANDS = { build, edit, surrogate }

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  let answer
  try {
    const command = JSON.parse(line)
    const run = COMMANDS[command.cmd]
    if (run === undefined) throw new Error(`unknown command ${command.cmd}`)
    answer = { ok: run(command) }
  } catch (error) {
    answer = { error: String(error && error.stack ? error.stack : error) }
  }
  // Waits for the write: answers can be larger than a pipe's buffer.
  await new Promise((resolve) => process.stdout.write(JSON.stringify(answer) + '\n', resolve))
}

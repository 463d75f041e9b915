// A late Yjs joiner (yjs + y-websocket in Node), driven by tests/interop/test_real_editors.py
// through JSON lines. Each request on stdin, {"hub", "room", "texts": [...], "fragments": [...]},
// joins the room with a fresh Y.Doc, waits for the hub's full state (the provider's "sync"), and
// answers on stdout {"texts": {name: Y.Text delta}, "fragments": {name: ProseMirror doc JSON}},
// or {"error": ...}. Exits when stdin closes.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { yXmlFragmentToProseMirrorRootNode } from 'y-prosemirror'
import { schema } from 'prosemirror-schema-basic'
import WebSocket from 'ws'
import readline from 'node:readline'

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const read = (request) => new Promise((resolve) => {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(request.hub, request.room, doc, { WebSocketPolyfill: WebSocket })
  provider.awareness.setLocalStateField('user', { name: 'late-joiner' })
  const timer = setTimeout(() => {
    provider.destroy()
    resolve({ error: `no sync with ${request.hub}/${request.room} within 10 s` })
  }, 10000)
  provider.on('sync', (synced) => {
    if (!synced) return
    clearTimeout(timer)
    try {
      const texts = {}
      for (const name of request.texts || []) texts[name] = doc.getText(name).toDelta()
      const fragments = {}
      for (const name of request.fragments || []) {
        const root = yXmlFragmentToProseMirrorRootNode(doc.getXmlFragment(name), schema)
        fragments[name] = root.toJSON()
      }
      resolve({ texts, fragments })
    } catch (err) {
      resolve({ error: String(err && err.stack ? err.stack : err) })
    } finally {
      provider.destroy()
    }
  })
})

const lines = readline.createInterface({ input: process.stdin })
let queue = Promise.resolve()
lines.on('line', (line) => {
  if (!line.trim()) return
  queue = queue.then(async () => {
    try {
      say(await read(JSON.parse(line)))
    } catch (err) {
      say({ error: String(err && err.stack ? err.stack : err) })
    }
  })
})
lines.on('close', () => queue.then(() => process.exit(0)))

// A Quill 2 editor bound to a Y.Text by y-quill, synced through the hub with y-websocket's
// WebsocketProvider (bundled by tests/interop/test_real_editors.py with esbuild).
// Query: ?hub=ws://...&room=...&text=quill&user=name. The test drives it through window.editor.
import Quill from 'quill'
import QuillCursors from 'quill-cursors'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { QuillBinding } from 'y-quill'

Quill.register('modules/cursors', QuillCursors)

const params = new URLSearchParams(window.location.search)
const doc = new Y.Doc()
const provider = new WebsocketProvider(params.get('hub'), params.get('room'), doc)
provider.awareness.setLocalStateField('user', { name: params.get('user') || 'quill', color: '#1e6fd9' })
const type = doc.getText(params.get('text') || 'quill')
const quill = new Quill('#editor', {
  theme: 'snow',
  modules: { cursors: true, toolbar: [['bold', 'italic'], ['image']], history: { userOnly: true } }
})
const binding = new QuillBinding(type, quill, provider.awareness)

window.editor = {
  doc,
  provider,
  quill,
  type,
  binding,
  synced: false,
  // client id -> clock: what this page holds (a crdtdoc Version's clocks)
  stateVector: () => Object.fromEntries(Y.decodeStateVector(Y.encodeStateVector(doc))),
  // the ids of clients whose items are in the text
  authors: () => {
    const ids = new Set()
    for (let item = type._start; item !== null; item = item.right) ids.add(item.id.client)
    return [...ids]
  }
}
provider.on('sync', (synced) => { if (synced) window.editor.synced = true })

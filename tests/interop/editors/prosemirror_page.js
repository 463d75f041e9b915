// A ProseMirror editor (prosemirror-schema-basic) bound to the Y.XmlFragment "prosemirror" by
// y-prosemirror's ySyncPlugin, with y-websocket's WebsocketProvider (bundled by
// tests/interop/test_real_editors.py with esbuild). Query: ?hub=ws://...&room=...&user=name.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { ySyncPlugin, yCursorPlugin, yUndoPlugin, undo, redo } from 'y-prosemirror'
import { EditorState, TextSelection } from 'prosemirror-state'
import { EditorView } from 'prosemirror-view'
import { schema } from 'prosemirror-schema-basic'
import { keymap } from 'prosemirror-keymap'
import { baseKeymap, toggleMark } from 'prosemirror-commands'

const params = new URLSearchParams(window.location.search)
const doc = new Y.Doc()
const provider = new WebsocketProvider(params.get('hub'), params.get('room'), doc)
provider.awareness.setLocalStateField('user', { name: params.get('user') || 'pm', color: '#c2410c' })
const fragment = doc.getXmlFragment('prosemirror')

const view = new EditorView(document.querySelector('#editor'), {
  state: EditorState.create({
    schema,
    plugins: [
      ySyncPlugin(fragment),
      yCursorPlugin(provider.awareness),
      yUndoPlugin(),
      keymap({ 'Mod-z': undo, 'Mod-y': redo, 'Mod-Shift-z': redo, 'Mod-b': toggleMark(schema.marks.strong) }),
      keymap(baseKeymap)
    ]
  })
})

// Every item in the fragment, nested elements and texts included: the ids of their clients.
const authors = () => {
  const ids = new Set()
  const walk = (type) => {
    for (let item = type._start; item !== null; item = item.right) {
      ids.add(item.id.client)
      if (item.content.type) walk(item.content.type)
    }
  }
  walk(fragment)
  return [...ids]
}

// The document positions of `word` (which must occur once, inside one paragraph of text).
const find = (word) => {
  const found = []
  view.state.doc.descendants((node, pos) => {
    if (!node.isTextblock) return true
    const text = node.textContent
    for (let at = text.indexOf(word); at >= 0; at = text.indexOf(word, at + 1)) {
      found.push(pos + 1 + at)
    }
    return false
  })
  if (found.length !== 1) throw new Error(`${JSON.stringify(word)} occurs ${found.length} times`)
  return { from: found[0], to: found[0] + word.length }
}
const select = (from, to) => {
  view.focus()
  view.dispatch(view.state.tr.setSelection(TextSelection.create(view.state.doc, from, to)))
}

window.editor = {
  doc,
  provider,
  view,
  fragment,
  synced: false,
  stateVector: () => Object.fromEntries(Y.decodeStateVector(Y.encodeStateVector(doc))),
  authors,
  json: () => view.state.doc.toJSON(),
  // selects `word`, as a person's double click would
  select: (word) => { const { from, to } = find(word); select(from, to) },
  // puts the cursor right after `word`, as a person's click would
  cursorAfter: (word) => { const { to } = find(word); select(to, to) }
}
provider.on('sync', (synced) => { if (synced) window.editor.synced = true })

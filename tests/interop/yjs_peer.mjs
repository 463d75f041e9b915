// A stock Yjs client: yjs + y-websocket's WebsocketProvider, configured with nothing but the URL.
// Driven by crdtdoc's interop test through JSON lines on stdout:
//   {"event":"synced"}  -> edits Y.Text "d" (multibyte included), then appends NODEDONE
//   waits until the text holds PYDONE and a peer named in awareness -> {"event":"final",...}
//   exits when stdin closes.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [url, room] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket })
provider.awareness.setLocalStateField('user', { name: 'node-peer' })
const text = doc.getText('d')
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const peers = () => [...provider.awareness.getStates().entries()]
  .filter(([id]) => id !== doc.clientID)
  .map(([, state]) => state.agent || (state.user && state.user.name))

provider.on('sync', (synced) => {
  if (!synced || provider._crdtdocStarted) return
  provider._crdtdocStarted = true
  say({ event: 'synced', clientID: doc.clientID })
  const pieces = ['héllo ', '😀 ', '中文 ', 'ünïcödé ', 'plain ']
  let i = 0
  const timer = setInterval(() => {
    if (i < 20) {
      const at = Math.floor(Math.random() * (text.length + 1))
      // never split a surrogate pair: insert at a code point boundary
      const s = text.toString()
      let pos = at
      if (pos > 0 && pos < s.length && /[\uDC00-\uDFFF]/.test(s[pos])) pos -= 1
      text.insert(pos, pieces[i % pieces.length])
      // delete the first character, whole: never half of a surrogate pair (see the test)
      if (i % 7 === 3 && text.length > 4) text.delete(0, /[\uD800-\uDBFF]/.test(text.toString()[0]) ? 2 : 1)
      i++
    } else {
      clearInterval(timer)
      text.insert(text.length, 'NODEDONE')
      const check = setInterval(() => {
        if (text.toString().includes('PYDONE') && peers().includes('py-agent')) {
          clearInterval(check)
          say({ event: 'final', text: text.toString(), peers: peers() })
        }
      }, 20)
    }
  }, 5)
})

process.stdin.on('end', () => { provider.destroy(); process.exit(0) })
process.stdin.resume()

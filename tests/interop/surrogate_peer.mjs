// A stock Yjs client (yjs + y-websocket's WebsocketProvider, nothing but the URL) driven by
// test_surrogate_split.py through JSON lines: commands on stdin, events on stdout.
//   events:   {"event":"synced"} once, first sync; {"event":"closed","code","reason"} for every
//             connection the hub closes
//   commands: {"op":"insert","at","text"}, {"op":"delete","at","n"} on Y.Text "t" (UTF-16
//             offsets, as Yjs counts: a delete may split a surrogate pair),
//             {"op":"read"} -> {"event":"text","text","units"} (units: the UTF-16 code units),
//             {"op":"disconnect"} -> stops the provider (and its reconnects) -> {"event":"disconnected"}
// Exits when stdin closes.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import * as readline from 'node:readline'

const [url, room] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket })
const text = doc.getText('t')
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

let synced = false
provider.on('sync', (isSynced) => {
  if (isSynced && !synced) {
    synced = true
    say({ event: 'synced' })
  }
})
provider.on('connection-close', (event) => {
  if (event) say({ event: 'closed', code: event.code, reason: event.reason })
})

const commands = readline.createInterface({ input: process.stdin })
commands.on('line', (line) => {
  const command = JSON.parse(line)
  if (command.op === 'insert') text.insert(command.at, command.text)
  else if (command.op === 'delete') text.delete(command.at, command.n)
  else if (command.op === 'read') {
    const s = text.toString()
    say({ event: 'text', text: s, units: Array.from({ length: s.length }, (_, i) => s.charCodeAt(i)) })
  } else if (command.op === 'disconnect') {
    provider.disconnect()
    say({ event: 'disconnected' })
  }
})
commands.on('close', () => { provider.destroy(); process.exit(0) })

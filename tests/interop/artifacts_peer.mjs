// A stock Yjs client that reads and writes crdtdoc's task list and spec by docs/SCHEMA.md alone.
// Driven by tests/interop/test_artifacts.py through JSON lines on stdout:
//   after sync: {"event":"read", tasks, spec}; then writes by the schema: {"event":"written", ...}
//   then waits until "Order.total" holds two values: {"event":"final", conflict}
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { randomBytes } from 'node:crypto'

const [url, room] = process.argv.slice(2)
const AGENT = 'node-agent'
const doc = new Y.Doc()
const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket })
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const now = () => Date.now() / 1000
const backlog = doc.getMap('backlog')
const spec = doc.getMap('user-service')

// Reading, with the derived rules of the schema.
const readTask = (task) => {
  const claims = [...task.get('claims').entries()].sort((a, b) => (a[1].at - b[1].at) || (a[0] < b[0] ? -1 : 1))
  const done = task.get('completions').size > 0
  return {
    title: task.get('title'),
    status: done ? 'done' : claims.length ? 'claimed' : 'open',
    claimants: claims.map(([agent]) => agent),
    notes: task.get('notes').toArray().map((n) => n.text),
  }
}
const readTasks = () => Object.fromEntries([...backlog.entries()].map(([id, t]) => [id, readTask(t)]))
const specValues = (member) => [...spec.entries()]
  .filter(([key, e]) => key.startsWith('m:') && e.member === member).map(([, e]) => e.value).sort()
const readSpec = () => {
  const members = new Set([...spec.entries()].filter(([k]) => k.startsWith('m:')).map(([, e]) => e.member))
  return Object.fromEntries([...members].sort().map((m) => [m, specValues(m)]))
}

// Writing, by the schema's rules.
const addTask = (title) => {
  const id = 't' + randomBytes(8).toString('hex').slice(0, 15)
  const task = new Y.Map()
  task.set('title', title); task.set('description', ''); task.set('labels', []); task.set('depends_on', [])
  task.set('created_by', AGENT); task.set('created_at', now())
  task.set('claims', new Y.Map()); task.set('completions', new Y.Map()); task.set('notes', new Y.Array())
  backlog.set(id, task)
  return id
}
const setMember = (member, value) => {
  for (const [key, e] of [...spec.entries()]) if (key.startsWith('m:') && e.member === member) spec.delete(key)
  spec.set('m:' + randomBytes(8).toString('hex'), { member, value, by: AGENT, at: now() })
}

provider.on('sync', (synced) => {
  if (!synced || provider._started) return
  provider._started = true
  say({ event: 'read', tasks: readTasks(), spec: readSpec() })
  let added
  doc.transact(() => {
    doc.getMap('__crdtdoc_agents').set(String(doc.clientID), AGENT)
    added = addTask('from node')
    const [first, second] = [...backlog.entries()].filter(([, t]) => t.get('title') !== 'from node')
      .sort((a, b) => a[1].get('created_at') - b[1].get('created_at'))
    first[1].get('claims').set(AGENT, { at: now() })
    first[1].get('notes').push([{ by: AGENT, text: 'node note', at: now() }])
    second[1].get('completions').set(randomBytes(8).toString('hex'), { by: AGENT, at: now() })
    setMember('User.id', 'int')
    setMember('getUser', '(id: int) -> User')
    setMember('Order.total', 'decimal')
  })
  say({ event: 'written', added })
  const check = setInterval(() => {
    if (specValues('Order.total').length === 2) {
      clearInterval(check)
      say({ event: 'final', conflict: specValues('Order.total'), tasks: readTasks() })
    }
  }, 20)
})

process.stdin.on('end', () => { provider.destroy(); process.exit(0) })
process.stdin.resume()

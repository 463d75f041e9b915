// Replays an editing trace through Yjs (one transaction per patch, as an editor makes them) and
// prints one JSON line: seconds, ops, final encoded size, peak RSS, whether the text matched.
//   node trace_yjs.mjs TRACE.json.gz [EDITS]
import * as Y from 'yjs'
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'

const trace = JSON.parse(gunzipSync(readFileSync(process.argv[2])).toString())
const limit = process.argv[3] ? Number(process.argv[3]) : Infinity // only the first edits
if (limit !== Infinity) {
  let text = ''
  const kept = []
  for (const txn of trace.txns) {
    for (const [pos, del, ins] of txn.patches) {
      if (kept.length >= limit) break
      text = text.slice(0, pos) + ins + text.slice(pos + del)
      kept.push({ patches: [[pos, del, ins]] })
    }
  }
  trace.txns = kept
  trace.endContent = text
}
const doc = new Y.Doc()
const text = doc.getText('text')
let ops = 0
const started = performance.now()
for (const txn of trace.txns) {
  for (const [pos, del, ins] of txn.patches) {
    doc.transact(() => {
      if (del > 0) text.delete(pos, del)
      if (ins) text.insert(pos, ins)
    })
    ops++
  }
}
const seconds = (performance.now() - started) / 1000
const encoded = Y.encodeStateAsUpdate(doc).length
const status = readFileSync('/proc/self/status', 'utf8')
const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)[1]) / 1024
process.stdout.write(JSON.stringify({
  seconds, ops, ops_per_s: ops / seconds, encoded_bytes: encoded, peak_rss_mib: hwm,
  matches: text.toString() === trace.endContent,
}) + '\n')

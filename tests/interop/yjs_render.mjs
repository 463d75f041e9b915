// Applies a base update and then each case update (on a fresh Y.Doc each) and prints, per case,
// how Yjs renders the named roots: text as its string, maps and arrays as plain JSON (binary as
// {"$bytes": hex}, nested types rendered the same way). Input on stdin:
//   {"base": hex, "cases": [hex, ...], "roots": [[name, "text" | "map" | "array"], ...]}
import * as Y from 'yjs'

const render = (value) => {
  if (value instanceof Y.XmlText || value instanceof Y.XmlFragment || value instanceof Y.XmlElement) {
    return { $xml: value.toString() }
  }
  if (value instanceof Y.Text) return value.toString()
  if (value instanceof Y.Map) {
    const out = {}
    for (const [k, v] of value.entries()) out[k] = render(v)
    return out
  }
  if (value instanceof Y.Array) return value.toArray().map(render)
  if (value instanceof Y.Doc) return { $doc: true }
  if (value instanceof Y.AbstractType) return { $type: value.constructor.name }
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('hex') }
  if (Array.isArray(value)) return value.map(render)
  if (value !== null && typeof value === 'object') {
    const out = {}
    for (const [k, v] of Object.entries(value)) out[k] = render(v)
    return out
  }
  return value === undefined ? null : value
}

let input = ''
process.stdin.on('data', (chunk) => { input += chunk })
process.stdin.on('end', () => {
  const { base, cases, roots } = JSON.parse(input)
  const results = cases.map((hex) => {
    const doc = new Y.Doc()
    try {
      Y.applyUpdate(doc, Buffer.from(base, 'hex'))
      Y.applyUpdate(doc, Buffer.from(hex, 'hex'))
    } catch (error) {
      return { error: String(error) }
    }
    const out = {}
    for (const [name, kind] of roots) {
      const root = kind === 'text' ? doc.getText(name) : kind === 'map' ? doc.getMap(name) : doc.getArray(name)
      out[name] = render(root)
    }
    return out
  })
  process.stdout.write(JSON.stringify(results))
})

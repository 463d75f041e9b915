// Hocuspocus (npm @hocuspocus/server), in memory, for the hub load benchmark: PORT from the env.
import { Server } from '@hocuspocus/server'

const server = new Server({ port: Number(process.env.PORT), address: '127.0.0.1', quiet: true, stopOnSignals: true })
await server.listen()

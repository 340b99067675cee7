import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { findExecutable } from './backends.js'
import { trackForExit } from './cleanup.js'

/** A TCP relay to one server that a test can cut, as a network partition would, and mend. */
export interface PartitionableLink {
  /** Where to connect instead of the server. */
  host: string
  port: number
  /**
   * Nothing passes any more, in either direction, and new connections are left hanging: no
   * reset, no error, as when packets are dropped. What was sent meanwhile is held, not lost.
   */
  cut(): void
  /** Everything held goes through and the link works again (TCP retransmission, in effect). */
  mend(): void
  close(): Promise<void>
}

/** Relays `listenHost:<free port>` to `target`; see PartitionableLink. */
export async function startPartitionableLink(
  target: { host: string; port: number },
  listenHost = '127.0.0.1',
): Promise<PartitionableLink> {
  let cut = false
  const pairs = new Set<[Socket, Socket]>()
  const waiting: Socket[] = [] // accepted while cut: connected to the server once mended
  const relay = (client: Socket) => {
    const server = connect(target.port, target.host)
    const pair: [Socket, Socket] = [client, server]
    pairs.add(pair)
    client.pipe(server)
    server.pipe(client)
    const drop = () => {
      pairs.delete(pair)
      client.destroy()
      server.destroy()
    }
    client.on('error', drop).on('close', drop)
    server.on('error', drop).on('close', drop)
  }
  const listener: Server = createServer((client) => {
    if (!cut) return relay(client)
    client.pause()
    client.on('error', () => client.destroy())
    waiting.push(client)
  })
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject)
    listener.listen(0, listenHost, () => resolve())
  })
  const port = (listener.address() as { port: number }).port
  return {
    host: listenHost,
    port,
    cut() {
      cut = true
      for (const [client, server] of pairs) {
        client.pause()
        server.pause()
      }
    },
    mend() {
      cut = false
      for (const [client, server] of pairs) {
        client.resume()
        server.resume()
      }
      for (const client of waiting.splice(0)) {
        relay(client)
        client.resume()
      }
    },
    async close() {
      for (const [client, server] of pairs) {
        client.destroy()
        server.destroy()
      }
      for (const client of waiting.splice(0)) client.destroy()
      await new Promise((resolve) => listener.close(resolve))
    },
  }
}

/** A network namespace of the test's own, joined to this one by a veth pair. */
export interface NetworkNamespace {
  name: string
  /** This side's address, reachable from inside the namespace. */
  hostAddress: string
  /** The namespace's own address. */
  namespaceAddress: string
  /** The command line that runs `command` inside the namespace. */
  wrap(command: string, args: string[]): { command: string; args: string[] }
  remove(): Promise<void>
}

/** Whether this process may create network namespaces (root, `ip` from iproute2). */
export function networkNamespacesAvailable(): boolean {
  if (process.getuid?.() !== 0 || !findExecutable('ip')) return false
  const probe = `rtk-probe-${randomBytes(3).toString('hex')}`
  const added = spawnSync('ip', ['netns', 'add', probe], { stdio: 'ignore' }).status === 0
  if (added) spawnSync('ip', ['netns', 'delete', probe], { stdio: 'ignore' })
  return added
}

let subnet = 0

/** Creates a namespace with a veth pair on a private /30 (10.213.x.0), up and addressed. */
export async function createNetworkNamespace(): Promise<NetworkNamespace> {
  const id = randomBytes(3).toString('hex')
  const name = `rtk-${id}`
  const hostLink = `rth${id}`
  const innerLink = `rtn${id}`
  const third = (process.pid + subnet++) % 250
  const hostAddress = `10.213.${third}.1`
  const namespaceAddress = `10.213.${third}.2`
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' })
  const remove = () => {
    spawnSync('ip', ['link', 'delete', hostLink], { stdio: 'ignore' })
    spawnSync('ip', ['netns', 'delete', name], { stdio: 'ignore' })
  }
  const forget = trackForExit({ signal: 'SIGTERM', dirs: [], cleanup: remove })
  ip('netns', 'add', name)
  ip('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', innerLink)
  ip('link', 'set', innerLink, 'netns', name)
  ip('addr', 'add', `${hostAddress}/30`, 'dev', hostLink)
  ip('link', 'set', hostLink, 'up')
  ip('netns', 'exec', name, 'ip', 'addr', 'add', `${namespaceAddress}/30`, 'dev', innerLink)
  ip('netns', 'exec', name, 'ip', 'link', 'set', innerLink, 'up')
  ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up')
  return {
    name,
    hostAddress,
    namespaceAddress,
    wrap: (command, args) => ({ command: 'ip', args: ['netns', 'exec', name, command, ...args] }),
    remove: async () => {
      remove()
      forget()
    },
  }
}

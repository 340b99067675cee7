import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findExecutable } from './backends.js'
import { trackForExit } from './cleanup.js'
import { freePort } from './free-port.js'

/** A private etcd cluster on loopback (Debian's `etcd-server`). */
export interface RunningEtcd {
  /** Client URLs of every member (`http://127.0.0.1:port`). */
  endpoints: string[]
  /** SIGKILLs one member (its data is kept). */
  killMember(index: number): Promise<void>
  /** The index (in `endpoints`) of the member that leads the cluster now. */
  leaderIndex(): Promise<number>
  /** Stops every member and removes their data. */
  stop(): Promise<void>
}

/** Whether `etcd` is installed here. */
export function etcdAvailable(): boolean {
  return findExecutable('etcd') !== undefined
}

/** Starts `members` etcd processes forming one new cluster, and resolves once it answers. */
export async function startEtcdCluster(members = 3): Promise<RunningEtcd> {
  const etcd = findExecutable('etcd')
  if (!etcd) throw new Error('etcd not found: apt-get install etcd-server')
  const root = await mkdtemp(join(tmpdir(), 'replicator-etcd-'))
  const ports = await Promise.all(
    Array.from({ length: members }, async () => ({ client: await freePort(), peer: await freePort() })),
  )
  const cluster = ports.map(({ peer }, index) => `m${index}=http://127.0.0.1:${peer}`).join(',')
  const token = `replicator-${randomBytes(4).toString('hex')}`
  const children: Array<ChildProcess | null> = []
  const forgets: Array<() => void> = []
  const untrackRoot = trackForExit({ signal: 'SIGKILL', dirs: [root] })
  for (const [index, { client, peer }] of ports.entries()) {
    const child = spawn(
      etcd,
      [
        `--name=m${index}`,
        `--data-dir=${join(root, `m${index}`)}`,
        `--listen-client-urls=http://127.0.0.1:${client}`,
        `--advertise-client-urls=http://127.0.0.1:${client}`,
        `--listen-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-cluster=${cluster}`,
        '--initial-cluster-state=new',
        `--initial-cluster-token=${token}`,
        // fast elections on loopback: a killed leader is replaced within about a second
        '--heartbeat-interval=50',
        '--election-timeout=500',
      ],
      { stdio: 'ignore' },
    )
    children.push(child)
    forgets.push(trackForExit({ pid: child.pid, signal: 'SIGKILL', dirs: [] }))
  }
  const endpoints = ports.map(({ client }) => `http://127.0.0.1:${client}`)
  const killMember = async (index: number) => {
    const child = children[index]
    if (!child) return
    children[index] = null
    const gone = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await gone
    forgets[index]!()
  }
  const stop = async () => {
    for (let index = 0; index < children.length; index++) await killMember(index)
    await rm(root, { recursive: true, force: true })
    untrackRoot()
  }
  try {
    await waitForHealth(endpoints, 20_000)
  } catch (error) {
    await stop()
    throw error
  }
  const leaderIndex = async () => {
    // each member's status (the JSON gateway): its own id, and the leader's
    const statuses = await Promise.all(
      endpoints.map((endpoint, index) =>
        children[index]
          ? fetch(`${endpoint}/v3/maintenance/status`, { method: 'POST', body: '{}' })
              .then((response) => response.json() as Promise<{ header: { member_id: string }; leader: string }>)
              .catch(() => null)
          : null,
      ),
    )
    const leader = statuses.find((status) => status?.leader)?.leader
    return statuses.findIndex((status) => status !== null && status.header.member_id === leader)
  }
  return { endpoints, killMember, leaderIndex, stop }
}

async function waitForHealth(endpoints: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const answers = await Promise.all(
      endpoints.map((endpoint) =>
        fetch(`${endpoint}/health`)
          .then(async (response) => ((await response.json()) as { health?: string }).health === 'true')
          .catch(() => false),
      ),
    )
    if (answers.every(Boolean)) return
    if (Date.now() > deadline) throw new Error(`etcd cluster not healthy within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

import type * as ZongJiExports from '@vlasky/zongji'
import { ReplicatorError } from '@mostajs/replicator-core'

type ZongJiModule = typeof ZongJiExports

let loading: Promise<ZongJiModule> | undefined

/**
 * ZongJi, loaded when a capture first reads the binary log: it is the only user of it, so a
 * project that routes queries or copies snapshots need not install it (an optional peer).
 */
export function loadZongJi(): Promise<ZongJiModule> {
  loading ??= import('@vlasky/zongji').catch((error: unknown) => {
    loading = undefined
    throw new ReplicatorError(
      'NOT_SUPPORTED',
      '[replicator:mysql] Change capture reads the binary log with @vlasky/zongji, which is not installed: npm install @vlasky/zongji@0.9.0',
      { cause: error },
    )
  })
  return loading
}

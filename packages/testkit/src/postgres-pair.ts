import { connectDialect, type Dialect } from '@mostajs/replicator-core'
import { startPostgres, startPostgresStandby, type RunningPostgres } from './postgres.js'

/** A private PostgreSQL master and its native standby, with one database and direct connections to both. */
export interface PostgresPair {
  master: RunningPostgres
  standby: RunningPostgres
  masterUri: string
  /** The same database, on the standby. */
  standbyUri: string
  /** Direct connections, around any manager (pause the standby's replay with `onStandby.query('SELECT pg_wal_replay_pause()')`). */
  onMaster: Dialect
  onStandby: Dialect
  stop(): Promise<void>
}

/**
 * Starts a master with database `name`, runs `setup` on it (tables the standby then has from
 * its base backup), then starts a native standby. The dialect package must be imported.
 */
export async function startPostgresPair(
  name: string,
  setup: (master: Dialect) => Promise<unknown> = async () => undefined,
): Promise<PostgresPair> {
  const master = await startPostgres()
  const masterUri = await master.createDatabase(name)
  const onMaster = await connectDialect({ dialect: 'postgres', uri: masterUri })
  await setup(onMaster)
  const standby = await startPostgresStandby(master)
  const standbyUri = Object.assign(new URL(masterUri), { port: String(standby.port) }).toString()
  const onStandby = await connectDialect({ dialect: 'postgres', uri: standbyUri })
  return {
    master,
    standby,
    masterUri,
    standbyUri,
    onMaster,
    onStandby,
    async stop() {
      await onMaster.close()
      await onStandby.close()
      await standby.stop()
      await master.stop()
    },
  }
}

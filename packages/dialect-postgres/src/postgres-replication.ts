import { ReplicatorError, type NativeReplication, type NativeReplicationStatus } from '@mostajs/replicator-core'
import type { PostgresDialect } from './postgres-dialect.js'

/** PostgreSQL's streaming replication: replay figures, pg_promote(), read-only, primary_conninfo. */
export class PostgresReplication implements NativeReplication {
  constructor(private readonly db: PostgresDialect) {}

  async status(): Promise<NativeReplicationStatus> {
    const [{ standby }] = (await this.db.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby')) as [
      { standby: boolean },
    ]
    if (!standby) {
      const [row] = await this.db.query<{ lsn: string; standbys: string; read_only: string }>(
        `SELECT pg_current_wal_lsn()::text AS lsn, (SELECT count(*) FROM pg_stat_replication)::text AS standbys, current_setting('default_transaction_read_only') AS read_only`,
      )
      return { role: 'primary', lsn: row?.lsn, standbys: Number(row?.standbys ?? 0), readOnly: row?.read_only === 'on' }
    }
    const [row] = await this.db.query<{
      replay_lsn: string | null
      receive_lsn: string | null
      replay_at: Date | null
      paused: boolean
      lag_ms: string | null
      receiving: boolean
    }>(
      `SELECT pg_last_wal_replay_lsn()::text AS replay_lsn, pg_last_wal_receive_lsn()::text AS receive_lsn,
              pg_last_xact_replay_timestamp() AS replay_at, pg_is_wal_replay_paused() AS paused,
              (EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::text AS lag_ms,
              COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver LIMIT 1), false) AS receiving`,
    )
    return {
      role: 'replica',
      lagMs: row?.lag_ms === null || row?.lag_ms === undefined ? null : Math.max(0, Math.round(Number(row.lag_ms))),
      applying: !row?.paused,
      receiving: row?.receiving === true,
      replayLsn: row?.replay_lsn,
      receiveLsn: row?.receive_lsn,
      lastReplayAt: row?.replay_at,
    }
  }

  /** pg_promote(): the standby leaves recovery and accepts writes (waits up to 60 s). */
  async promote(): Promise<void> {
    const [row] = await this.db.query<{ promoted: boolean }>('SELECT pg_promote(true, 60) AS promoted')
    if (!row?.promoted)
      throw new ReplicatorError(
        'QUERY_FAILED',
        `[replicator:postgres] pg_promote() did not complete on ${this.db.maskedUri} within 60 s.`,
      )
    await this.setReadOnly(false)
  }

  /** Sets default_transaction_read_only for every new transaction of every session (ALTER SYSTEM + reload). */
  async setReadOnly(readOnly: boolean): Promise<void> {
    await this.db.query(
      readOnly
        ? 'ALTER SYSTEM SET default_transaction_read_only = on'
        : 'ALTER SYSTEM RESET default_transaction_read_only',
    )
    await this.db.query('SELECT pg_reload_conf()')
  }

  /** Terminates the other client sessions of this database (walsenders are not client backends). */
  async endSessions(): Promise<number> {
    const [row] = await this.db.query<{ ended: string }>(
      `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::text AS ended FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
    )
    return Number(row?.ended ?? 0)
  }

  /** Points this standby's primary_conninfo at another primary (applied by a reload). */
  async replicateFrom(primaryUri: string): Promise<void> {
    const url = new URL(primaryUri)
    const quote = (value: string) => `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`
    const conninfo = [
      `host=${quote(url.hostname)}`,
      `port=${url.port || '5432'}`,
      `user=${quote(decodeURIComponent(url.username || 'postgres'))}`,
      ...(url.password ? [`password=${quote(decodeURIComponent(url.password))}`] : []),
    ].join(' ')
    await this.db.query(`ALTER SYSTEM SET primary_conninfo = '${conninfo.replaceAll("'", "''")}'`)
    await this.db.query('SELECT pg_reload_conf()')
  }
}

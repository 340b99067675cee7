import { ReplicatorError, type NativeReplication, type NativeReplicationStatus } from '@mostajs/replicator-core'
import type { MysqlDialect } from './mysql-dialect.js'

/** MySQL/MariaDB replication: SHOW SLAVE STATUS, STOP/RESET SLAVE, read_only, CHANGE MASTER … MASTER_USE_GTID. */
export class MysqlReplication implements NativeReplication {
  constructor(private readonly db: MysqlDialect) {}

  async status(): Promise<NativeReplicationStatus> {
    const rows = await this.db.query<Record<string, unknown>>('SHOW SLAVE STATUS')
    const [flags] = await this.db.query<{ readOnly: number | string }>('SELECT @@global.read_only AS readOnly')
    const readOnly = Number(flags?.readOnly ?? 0) !== 0
    const status = rows[0]
    if (!status) return { role: 'primary', readOnly }
    const seconds = status.Seconds_Behind_Master
    return {
      role: 'replica',
      lagMs: seconds === null || seconds === undefined ? null : Number(seconds) * 1000,
      applying: status.Slave_SQL_Running === 'Yes',
      receiving: status.Slave_IO_Running === 'Yes',
      gtidPosition: status.Gtid_IO_Pos,
      lastError: status.Last_Error || undefined,
      readOnly,
    }
  }

  /**
   * Applies what the replica received and did not apply yet (its relay log: with semi-sync,
   * every acknowledged commit), then stops and forgets replication and accepts writes.
   */
  async promote(): Promise<void> {
    const { gtidPosition } = await this.status()
    const received = typeof gtidPosition === 'string' ? gtidPosition : ''
    if (received && this.db.serverIsMariaDB) {
      const [waited] = await this.db.query<{ done: number | null }>('SELECT MASTER_GTID_WAIT(?, 30) AS done', [
        received,
      ])
      if (Number(waited?.done) !== 0)
        throw new ReplicatorError(
          'LAG_TOO_HIGH',
          `[replicator:${this.db.name}] ${this.db.maskedUri} did not apply its relay log (up to ${received}) within 30 s; not promoted.`,
        )
    }
    await this.db.query('STOP SLAVE')
    await this.db.query('RESET SLAVE ALL')
    await this.setReadOnly(false)
  }

  /** SET GLOBAL read_only (accounts with SUPER / READ ONLY ADMIN still bypass it). */
  async setReadOnly(readOnly: boolean): Promise<void> {
    await this.db.query(`SET GLOBAL read_only = ${readOnly ? 1 : 0}`)
  }

  /** Kills the other client connections to this database (replication threads are kept). */
  async endSessions(): Promise<number> {
    const rows = await this.db.query<{ id: number | string }>(
      `SELECT ID AS id FROM information_schema.PROCESSLIST
        WHERE ID <> CONNECTION_ID() AND DB = DATABASE()
          AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon') AND USER <> 'system user'`,
    )
    let ended = 0
    for (const { id } of rows)
      await this.db
        .query(`KILL CONNECTION ${Number(id)}`)
        .then(() => ended++)
        .catch(() => undefined) // it ended by itself meanwhile
    return ended
  }

  /** Re-points this replica at another primary, continuing from its GTID position. */
  async replicateFrom(primaryUri: string): Promise<void> {
    const url = new URL(primaryUri)
    const wasReplica = (await this.status()).role === 'replica'
    await this.db.query('STOP SLAVE')
    // a former master (a switchover) goes on from its own last transaction, not from nothing
    if (!wasReplica && this.db.serverIsMariaDB) await this.db.query('SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos')
    await this.db.query(
      `CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ?, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1`,
      [
        url.hostname,
        Number(url.port || 3306),
        decodeURIComponent(url.username || 'root'),
        decodeURIComponent(url.password),
      ],
    )
    await this.db.query('START SLAVE')
  }
}

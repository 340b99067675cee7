import { cpus, hostname, platform, release, totalmem } from 'node:os'

/** The machine a benchmark ran on, written beside its figures. */
export function machineInfo() {
  return {
    hostname: hostname(),
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    platform: `${platform()} ${release()}`,
    node: process.version,
  }
}

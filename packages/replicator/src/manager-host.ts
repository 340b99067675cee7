import type { ReplicationManagerEvents } from './events.js'

/**
 * What every part of the manager may ask of the manager that wires the parts: tell listeners,
 * report a background problem, and say the topology changed (auto-persist saves it).
 */
export interface ManagerHost {
  emit<K extends keyof ReplicationManagerEvents>(event: K, ...args: ReplicationManagerEvents[K]): boolean
  /** Background work never throws into the application; listeners of 'error' hear about problems. */
  report(error: unknown): void
  /** The topology, routing or rules changed. */
  changed(): void
}

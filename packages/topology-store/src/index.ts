export type { ProjectTopology, TopologyStore } from './topology-store.js'
export { MemoryTopologyStore } from './memory-topology-store.js'
export { EtcdTopologyStore, type EtcdTopologyStoreOptions } from './etcd-topology-store.js'

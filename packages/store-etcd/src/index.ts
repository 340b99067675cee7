export { EtcdTopologyStore, type EtcdTopologyStoreOptions } from './etcd-topology-store.js'

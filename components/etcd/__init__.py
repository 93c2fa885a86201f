"""etcd: a mutual-TLS cluster over SSH hosts, health-gated, grown and replaced member by member."""

from components.etcd.cluster import EtcdCluster, EtcdClusterArgs

__all__ = ["EtcdCluster", "EtcdClusterArgs"]

"""The local recipe: the cookbook (etcd, k3s, a registry) in containers on this machine's Docker engine."""

from components.local.cluster import LocalCluster, LocalClusterArgs, LocalRegistryArgs
from components.local.etcd import LocalEtcd, LocalEtcdArgs
from components.local.kubernetes import LocalKubernetes, LocalKubernetesArgs

__all__ = ["LocalCluster", "LocalClusterArgs", "LocalEtcd", "LocalEtcdArgs", "LocalKubernetes",
           "LocalKubernetesArgs", "LocalRegistryArgs"]

"""The local recipe: the cookbook (etcd, k3s, a registry, and Mesos behind a switch) in containers on this machine's
Docker engine."""

from components.local.cluster import LocalCluster, LocalClusterArgs, LocalRegistryArgs
from components.local.etcd import LocalEtcd, LocalEtcdArgs
from components.local.kubernetes import LocalKubernetes, LocalKubernetesArgs
from components.local.mesos import LocalMesosArgs, LocalMesosNode

__all__ = ["LocalCluster", "LocalClusterArgs", "LocalEtcd", "LocalEtcdArgs", "LocalKubernetes",
           "LocalKubernetesArgs", "LocalMesosArgs", "LocalMesosNode", "LocalRegistryArgs"]

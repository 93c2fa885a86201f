"""Apache Mesos (retired: Apache Attic, final release 1.11.0; amd64 images only) on Docker hosts: masters with
Marathon, and agents, in containers through one pulumi-docker provider per host over SSH."""

from components.mesos.cluster import DockerHost, MesosCluster, MesosClusterArgs

__all__ = ["DockerHost", "MesosCluster", "MesosClusterArgs"]

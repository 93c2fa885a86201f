"""Apache Mesos (retired: Apache Attic, final release 1.11.0; amd64 images only): masters with Marathon, and
agents, in Docker containers through pulumi-docker, on targets: hosts over SSH with one provider each
(`DockerHost`), or the local stack's engine (`components/local/mesos.py`)."""

from components.mesos.cluster import DockerHost, MesosCluster, MesosClusterArgs
from components.mesos.targets import MesosTarget, Placement

__all__ = ["DockerHost", "MesosCluster", "MesosClusterArgs", "MesosTarget", "Placement"]

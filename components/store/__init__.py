"""Store: an S3-compatible object store (Pithos in front of a Cassandra ring) on Kubernetes."""

from components.store.cassandra import CassandraArgs, CassandraCluster
from components.store.pithos import ObjectStore, PithosArgs, PithosBuild

__all__ = ["CassandraArgs", "CassandraCluster", "ObjectStore", "PithosArgs", "PithosBuild"]

"""Kubernetes: k3s servers (control-plane nodes) and agents (worker nodes) over the project's etcd, with
embedded flannel; rolling restarts and upgrades one node at a time, a readiness gate, a kubeconfig output."""

from components.kubernetes.cluster import Datastore, KubernetesCluster, KubernetesClusterArgs, KubernetesNode
from components.kubernetes.render import render_control_plane_gate, render_worker_gate

__all__ = ["Datastore", "KubernetesCluster", "KubernetesClusterArgs", "KubernetesNode", "render_control_plane_gate",
           "render_worker_gate"]

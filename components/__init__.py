"""Reusable Pulumi component resources of cluster-cookbook (one recipe per module)."""

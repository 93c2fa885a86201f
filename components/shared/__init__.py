"""Building blocks every recipe uses: SSH connections, script rendering, PKI, config validation, and the
Kubernetes provider target. Nothing here imports a recipe."""

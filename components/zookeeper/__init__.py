"""ZooKeeper ensembles on SSH hosts (`ZooKeeperEnsemble`), and the `zookeeper` config section."""

from components.zookeeper.ensemble import ZooKeeperEnsemble, ZooKeeperEnsembleArgs

__all__ = ["ZooKeeperEnsemble", "ZooKeeperEnsembleArgs"]

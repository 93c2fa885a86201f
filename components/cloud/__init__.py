"""cloud: nodes created in a cloud through apache-libcloud (Pulumi dynamic providers), booted with Ignition
(Fedora CoreOS, Flatcar) or cloud-init (Debian, Ubuntu) and then handed to the SSH recipes."""

from components.cloud.fleet import CloudFleet, CloudFleetArgs, CloudHost
from components.cloud.providers import CloudKeyPair, CloudNode, CloudSecurityGroup

__all__ = ["CloudFleet", "CloudFleetArgs", "CloudHost", "CloudKeyPair", "CloudNode", "CloudSecurityGroup"]

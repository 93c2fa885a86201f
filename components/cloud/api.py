"""The cloud calls the providers make, on apache-libcloud's CloudStack driver family.

One `CloudApi` per provider operation: libcloud drivers are not thread-safe, and the dynamic provider host
serves several operations at once. Public libcloud calls are used where they do what is needed; two calls go
through the driver's own API helper (`_sync_request`/`_async_request`, which every CloudStack method uses):
`createSecurityGroup` (libcloud's `ex_create_security_group` refuses a name that is a *substring* of an
existing group's name) and ingress from a security group (`ex_authorize_security_group_ingress` always sends
a `cidrlist`, even None). Every failure becomes a `CloudError` naming the object and carrying the cloud's
own message.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
RUNNING = "Running"
# CloudStack VM states from which a VM will never run again by itself.
DEAD_STATES = ("Error", "Destroyed", "Expunging")


class CloudError(Exception):
    """A cloud call failed; the message names the object and quotes the cloud."""


def cloud_message(error: BaseException) -> str:
    """The cloud's own words: libcloud's ProviderError keeps them in `value` (its str() adds quotes)."""
    from libcloud.common.types import InvalidCredsError

    if isinstance(error, InvalidCredsError):
        return "the cloud rejected the API credentials (cloud_api_key / cloud_api_secret)"
    value = getattr(error, "value", None)
    return str(value) if value else str(error)


@contextmanager
def cloud_call(what: str) -> Iterator[None]:
    """Runs cloud calls; any failure becomes `CloudError("<what>: <cloud's message>")`."""
    try:
        yield
    except CloudError:
        raise
    except Exception as error:  # libcloud raises plain Exception for failed async jobs
        raise CloudError(f"{what}: {cloud_message(error)}") from error


def md5_fingerprint(public_key: str) -> str:
    """CloudStack's key pair fingerprint: MD5 of the key blob, colon-separated hex."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class Rule:
    """One ingress rule: from a CIDR, or from members of the group itself (`source="group"`)."""

    protocol: str
    start_port: int
    end_port: int
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "start_port": self.start_port, "end_port": self.end_port,
                "source": self.source}

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> Rule:
        return Rule(str(raw["protocol"]).lower(), int(raw["start_port"]), int(raw["end_port"]), str(raw["source"]))


def _rule_of(ingress: Mapping[str, Any], group: str) -> Rule | None:
    if "cidr" in ingress:
        source = str(ingress["cidr"])
    elif ingress.get("securitygroupname") == group:
        source = "group"
    else:
        return None  # from another group: not ours to describe
    return Rule(str(ingress["protocol"]).lower(), int(ingress.get("startport", 0)), int(ingress.get("endport", 0)),
                source)


def _listing(kind: str, wanted: str, options: Sequence[Any]) -> str:
    names = sorted({str(option.name) for option in options})
    shown = ", ".join(repr(name) for name in names[:30])
    more = f" and {len(names) - 30} more" if len(names) > 30 else ""
    return f"unknown {kind} {wanted!r}; the cloud offers: {shown or 'none'}{more}"


def pick(kind: str, wanted: str, options: Sequence[T]) -> T:
    """The option whose id or name is `wanted`; a LookupError listing the valid names otherwise."""
    by_id = [option for option in options if str(getattr(option, "id", "")) == wanted]
    if by_id:
        return by_id[0]
    by_name = [option for option in options if getattr(option, "name", None) == wanted]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        ids = ", ".join(sorted(str(getattr(option, "id", "")) for option in by_name))
        raise LookupError(f"{kind} {wanted!r} names {len(by_name)} choices; give one of their ids: {ids}")
    raise LookupError(_listing(kind, wanted, options))


class CloudApi:
    """The calls the providers use, on one driver instance."""

    def __init__(self, driver: Any, poll_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.driver = driver
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep

    @staticmethod
    def connect(cloud: Mapping[str, Any], key: str, secret: str, poll_interval: float = 5.0) -> CloudApi:
        from libcloud.compute.providers import get_driver

        driver_class = get_driver(str(cloud["driver"]))
        endpoint = cloud.get("endpoint")
        driver = driver_class(key, secret, **({"url": str(endpoint)} if endpoint else {}))
        return CloudApi(driver, poll_interval)

    # --- catalog ----------------------------------------------------------------------------------------
    def resolve(self, zone: str, image: str, size: str) -> tuple[Any, Any, Any]:
        """(location, image, size) objects for names or ids; LookupError listing what the cloud offers."""
        with cloud_call("listing the cloud's zones"):
            locations = self.driver.list_locations()
        location = pick("zone", zone, locations)
        with cloud_call(f"listing the images of zone {location.name!r}"):
            images = self.driver.list_images(location=location)
        with cloud_call("listing the cloud's sizes"):
            sizes = self.driver.list_sizes()
        return location, pick("image", image, images), pick("size", size, sizes)

    # --- virtual machines -------------------------------------------------------------------------------
    def _vms(self, what: str) -> list[dict[str, Any]]:
        with cloud_call(what):
            listing = self.driver._sync_request("listVirtualMachines")  # the caller's own VMs
        return list(listing.get("virtualmachine", []))

    def vm(self, vm_id: str, what: str) -> dict[str, Any] | None:
        return next((vm for vm in self._vms(what) if str(vm["id"]) == str(vm_id)), None)

    def vms_named(self, name: str, what: str) -> list[dict[str, Any]]:
        return [vm for vm in self._vms(what) if vm.get("name") == name]

    def addresses(self, vm: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """(public, private) IPv4 addresses of a VM's NICs, classified as libcloud does."""
        node = self.driver._to_node(data=dict(vm))
        return sorted(node.public_ips), sorted(node.private_ips)

    def deploy(self, what: str, *, name: str, location: Any, image: Any, size: Any, key_pair: str,
               security_groups: Sequence[str], user_data: str, display_name: str) -> str:
        """Deploys and starts a VM (CloudStack's default would leave it stopped); returns its id."""
        with cloud_call(what):
            node = self.driver.create_node(
                name=name, size=size, image=image, location=location, ex_keyname=key_pair,
                ex_userdata=user_data, ex_security_groups=list(security_groups), ex_start_vm=True,
                ex_displayname=display_name)
        return str(node.id)

    def wait_running(self, vm_id: str, label: str, timeout: float) -> dict[str, Any]:
        """Polls until the VM is Running with an address; a dead VM or the timeout is a CloudError naming the
        VM and its last state (libcloud's wait_until_running needs a public address, which VMs on a private
        guest network never get, and its timeout message names no state)."""
        deadline = self.clock() + timeout
        while True:
            vm = self.vm(vm_id, f"{label}: reading VM {vm_id}")
            if vm is None:
                raise CloudError(f"{label}: VM {vm_id} disappeared while starting")
            state = str(vm.get("state"))
            if state in DEAD_STATES:
                raise CloudError(f"{label}: VM {vm_id} is {state}: it will not start; the next `pulumi up` "
                                 "destroys it and deploys the node again")
            if state == RUNNING and any(self.addresses(vm)):
                return vm
            if self.clock() >= deadline:
                raise CloudError(f"{label}: VM {vm_id} was still {state} after {timeout:g} s (cloud.start_timeout); "
                                 "the next `pulumi up` waits for it again")
            self.sleep(self.poll_interval)

    def destroy(self, vm: Mapping[str, Any], expunge: bool, what: str) -> None:
        with cloud_call(what):
            self.driver.destroy_node(self.driver._to_node(data=dict(vm)), ex_expunge=expunge)

    # --- key pairs --------------------------------------------------------------------------------------
    def key_pair(self, name: str, what: str) -> Any | None:
        with cloud_call(what):
            pairs = self.driver.list_key_pairs(name=name)
        return next((pair for pair in pairs if pair.name == name), None)

    def import_key_pair(self, name: str, public_key: str, what: str) -> Any:
        with cloud_call(what):
            return self.driver.import_key_pair_from_string(name, public_key)

    def delete_key_pair(self, pair: Any, what: str) -> None:
        with cloud_call(what):
            self.driver.delete_key_pair(pair)

    # --- security groups --------------------------------------------------------------------------------
    def group(self, name: str, what: str) -> dict[str, Any] | None:
        with cloud_call(what):
            groups = self.driver.ex_list_security_groups(securitygroupname=name)
        return next((dict(group) for group in groups if group.get("name") == name), None)

    def create_group(self, name: str, description: str, what: str) -> dict[str, Any]:
        with cloud_call(what):
            created = self.driver._sync_request("createSecurityGroup",
                                                params={"name": name, "description": description})
        return dict(created["securitygroup"])

    @staticmethod
    def rules_of(group: Mapping[str, Any]) -> dict[Rule, str]:
        """The group's ingress rules we can describe -> rule id."""
        rules = {}
        for ingress in group.get("ingressrule", []):
            rule = _rule_of(ingress, str(group["name"]))
            if rule is not None:
                rules[rule] = str(ingress["ruleid"])
        return rules

    def authorize(self, group: Mapping[str, Any], rule: Rule, what: str) -> None:
        name = str(group["name"])
        with cloud_call(what):
            if rule.source == "group":
                self.driver._async_request("authorizeSecurityGroupIngress", params={
                    "securitygroupname": name, "protocol": rule.protocol.upper(),
                    "startport": rule.start_port, "endport": rule.end_port,
                    "usersecuritygrouplist[0].account": str(group["account"]),
                    "usersecuritygrouplist[0].group": name,
                })
            else:
                self.driver.ex_authorize_security_group_ingress(
                    name, rule.protocol.upper(), rule.source, startport=rule.start_port, endport=rule.end_port)

    def revoke(self, rule_id: str, what: str) -> None:
        with cloud_call(what):
            self.driver.ex_revoke_security_group_ingress(rule_id)

    def delete_group(self, name: str, what: str) -> None:
        with cloud_call(what):
            self.driver.ex_delete_security_group(name)

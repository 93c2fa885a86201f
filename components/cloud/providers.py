"""Cloud nodes, key pairs and security groups as Pulumi dynamic resources (apache-libcloud underneath).

How a dynamic provider runs (pulumi/dynamic/__main__.py in the pinned SDK): the program pickles the provider
object with dill into the resource's `__provider` input, which the state keeps; the engine's `pulumi-python`
provider host unpickles it, calls `configure` with the stack's config, then check/diff/create/update/read/delete.
So the provider object holds only *names* of the secret config keys; `configure` reads the credentials, and
`__getstate__` keeps them out of any pickle. The provider classes live in this importable module, so dill
pickles them by reference: the host imports `components.cloud.providers` from the project directory.

Semantics, per resource:
- check: a node's zone, image and size must exist in the cloud (the error lists what it offers); `pulumi
  preview` and the preview of `pulumi up` run it for every node before anything is created.
- diff: what forces a replacement (REPLACE) vs what updates in place; replacements delete first, because the
  new object takes the same name.
- create: converges from whatever an interrupted run left: an object of ours with the same name (key pair
  with the same fingerprint, group with our description, VM with our display name, image, size and zone) is
  adopted instead of duplicated; a VM left in Error by a failed deploy is destroyed and deployed again.
- delete: already gone is success.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi.dynamic as dynamic
from pulumi.runtime.rpc import UNKNOWN

from components.cloud.api import DEAD_STATES, CloudApi, CloudError, Rule, md5_fingerprint, pick

# CloudStack takes at most 4 KB of base64 user data in a GET query (deployVirtualMachine's `userdata`).
MAX_USER_DATA_BASE64 = 4096


class CloudProvider(dynamic.ResourceProvider):
    """What the three providers share: credentials from config, diff by declared inputs, update in place."""

    KIND: ClassVar[str] = "cloud object"
    INPUTS: ClassVar[tuple[str, ...]] = ()
    REPLACE: ClassVar[tuple[str, ...]] = ()
    OUTPUTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, credential_keys: Sequence[str], poll_interval: float = 5.0):
        super().__init__()
        self.credential_keys = tuple(credential_keys)
        self.poll_interval = poll_interval
        self._credentials: tuple[str, str] | None = None

    # Only the config key names and the poll interval are ever pickled (the engine stores the pickle).
    def __getstate__(self) -> dict[str, Any]:
        return {"credential_keys": self.credential_keys, "poll_interval": self.poll_interval}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._credentials = None

    def configure(self, req: dynamic.ConfigureRequest) -> None:
        key, secret = (req.config.get(name) for name in self.credential_keys)
        self._credentials = (str(key), str(secret)) if key and secret else None

    def api(self, props: Mapping[str, Any]) -> CloudApi:
        if self._credentials is None:
            keys = " and ".join(self.credential_keys)
            raise CloudError(f"no cloud credentials: the provider reads the secret config keys {keys} "
                             "(`pulumi config set --secret KEY VALUE`)")
        return CloudApi.connect(props["cloud"], *self._credentials, poll_interval=self.poll_interval)

    def inputs(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {key: props.get(key) for key in self.INPUTS}

    def label(self, props: Mapping[str, Any]) -> str:
        return f"{self.KIND} {props.get('name')!r}"

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in self.INPUTS if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(changed), replaces=[key for key in changed if key in self.REPLACE],
                                  stables=[], delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        """Only inputs that need no cloud call change in place (the others replace): keep the outputs."""
        return dynamic.UpdateResult({**{key: olds.get(key) for key in self.OUTPUTS}, **self.inputs(news)})


class KeyPairProvider(CloudProvider):
    KIND = "cloud key pair"
    INPUTS = ("cloud", "name", "public_key")
    REPLACE = INPUTS
    OUTPUTS = ("fingerprint",)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        api, label, name = self.api(props), self.label(props), str(props["name"])
        public_key = str(props["public_key"]).strip()
        ours = md5_fingerprint(public_key)
        pair = api.key_pair(name, f"{label}: listing key pairs")
        if pair is None:
            pair = api.import_key_pair(name, public_key, f"{label}: registering the public key")
        elif pair.fingerprint != ours:
            raise CloudError(f"{label} already exists with another key (fingerprint {pair.fingerprint}, the deploy "
                             f"key's is {ours}): delete that key pair in the cloud, or give the stack another name")
        return dynamic.CreateResult(name, {**self.inputs(props), "fingerprint": pair.fingerprint or ours})

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        pair = self.api(props).key_pair(id_, f"{self.label(props)}: listing key pairs")
        if pair is None:
            return dynamic.ReadResult(None, {})
        return dynamic.ReadResult(id_, {**self.inputs(props), "fingerprint": pair.fingerprint})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        api, label = self.api(props), self.label(props)
        pair = api.key_pair(id_, f"{label}: listing key pairs")
        if pair is not None:
            api.delete_key_pair(pair, f"{label}: deleting")


class SecurityGroupProvider(CloudProvider):
    KIND = "cloud security group"
    INPUTS = ("cloud", "name", "description", "rules")
    REPLACE = ("cloud", "name", "description")
    OUTPUTS = ("group_id", "account")

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = []
        for index, raw in enumerate(news.get("rules") or []):
            try:
                rule = Rule.from_dict(raw)
            except (KeyError, TypeError, ValueError) as error:
                failures.append(dynamic.CheckFailure(f"rules[{index}]", f"malformed rule {raw!r}: {error}"))
                continue
            if rule.protocol not in ("tcp", "udp") or not 1 <= rule.start_port <= rule.end_port <= 65535:
                failures.append(dynamic.CheckFailure(f"rules[{index}]", f"not a TCP/UDP port range: {raw!r}"))
        return dynamic.CheckResult(news, failures)

    def _converge(self, api: CloudApi, group: dict[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
        """Authorizes the missing rules, then revokes the ones no longer wanted."""
        label = self.label(props)
        wanted = [Rule.from_dict(raw) for raw in props.get("rules") or []]
        current = api.rules_of(group)
        for rule in sorted(set(wanted) - set(current), key=lambda r: (r.protocol, r.start_port, r.source)):
            api.authorize(group, rule, f"{label}: allowing {rule.protocol} {rule.start_port}-{rule.end_port} "
                                       f"from {rule.source}")
        for rule, rule_id in sorted(current.items(), key=lambda item: item[1]):
            if rule not in wanted:
                api.revoke(rule_id, f"{label}: revoking {rule.protocol} {rule.start_port}-{rule.end_port} "
                                    f"from {rule.source}")
        return {**self.inputs(props), "group_id": str(group["id"]), "account": str(group.get("account", ""))}

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        api, label, name = self.api(props), self.label(props), str(props["name"])
        group = api.group(name, f"{label}: listing security groups")
        if group is None:
            group = api.create_group(name, str(props["description"]), f"{label}: creating")
        elif group.get("description") != props["description"]:
            raise CloudError(f"{label} already exists and was not created by this stack (its description is "
                             f"{group.get('description')!r}): rename or delete it")
        outs = self._converge(api, group, props)
        return dynamic.CreateResult(outs["group_id"], outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        api, label = self.api(news), self.label(news)
        group = api.group(str(news["name"]), f"{label}: listing security groups")
        if group is None:
            raise CloudError(f"{label} ({id_}) no longer exists in the cloud: run `pulumi refresh`, then `pulumi up`")
        return dynamic.UpdateResult(self._converge(api, group, news))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        api = self.api(props)
        group = api.group(str(props["name"]), f"{self.label(props)}: listing security groups")
        if group is None or str(group["id"]) != id_:
            return dynamic.ReadResult(None, {})
        rules = [rule.as_dict() for rule in sorted(api.rules_of(group), key=lambda r: (r.protocol, r.start_port,
                                                                                       r.source))]
        return dynamic.ReadResult(id_, {**self.inputs(props), "rules": rules, "group_id": id_,
                                        "account": str(group.get("account", ""))})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        api, label = self.api(props), self.label(props)
        group = api.group(str(props["name"]), f"{label}: listing security groups")
        if group is not None:
            api.delete_group(str(props["name"]), f"{label}: deleting")


class NodeProvider(CloudProvider):
    KIND = "cloud node"
    INPUTS = ("cloud", "name", "display_name", "zone", "image", "size", "key_pair", "security_groups", "user_data",
              "start_timeout", "expunge")
    REPLACE = ("cloud", "name", "display_name", "zone", "image", "size", "key_pair", "security_groups", "user_data")
    OUTPUTS = ("vm_id", "state", "address", "public_ips", "private_ips", "zone_id", "image_id", "size_id")

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        """The zone, image and size must exist in the cloud: the only checks config parsing cannot make."""
        failures = []
        user_data = news.get("user_data")
        if isinstance(user_data, str) and len(base64.b64encode(user_data.encode())) > MAX_USER_DATA_BASE64:
            failures.append(dynamic.CheckFailure("user_data", f"CloudStack takes at most {MAX_USER_DATA_BASE64} "
                                                              "bytes of base64 user data"))
        if any(news.get(key) == UNKNOWN for key in ("cloud", "zone", "image", "size")):
            return dynamic.CheckResult(news, failures)  # preview with unknown inputs: checked at create
        api = self.api(news)
        try:
            location = pick("zone", str(news["zone"]), api.driver.list_locations())
        except LookupError as error:
            return dynamic.CheckResult(news, [*failures, dynamic.CheckFailure("zone", str(error))])
        for key, options in (("image", lambda: api.driver.list_images(location=location)),
                             ("size", api.driver.list_sizes)):
            try:
                pick(key, str(news[key]), options())
            except LookupError as error:
                failures.append(dynamic.CheckFailure(key, str(error)))
        return dynamic.CheckResult(news, failures)

    def _outs(self, api: CloudApi, props: Mapping[str, Any], vm: Mapping[str, Any]) -> dict[str, Any]:
        public, private = api.addresses(vm)
        return {**self.inputs(props), "vm_id": str(vm["id"]), "state": str(vm["state"]),
                "address": (public or private or [""])[0], "public_ips": public, "private_ips": private,
                "zone_id": str(vm.get("zoneid", "")), "image_id": str(vm.get("templateid", "")),
                "size_id": str(vm.get("serviceofferingid", ""))}

    def _existing(self, api: CloudApi, props: Mapping[str, Any], ids: Mapping[str, str]) -> dict[str, Any] | None:
        """A VM an interrupted run left with this name: adopted when it is ours (display name, image, size,
        zone and key pair match), destroyed when a failed deploy left it in Error, an error otherwise."""
        label, name = self.label(props), str(props["name"])
        for vm in api.vms_named(name, f"{label}: listing VMs"):
            state = str(vm.get("state"))
            if state in ("Destroyed", "Expunging"):
                continue
            ours = {"displayname": props["display_name"], "keypair": props["key_pair"], **ids}
            theirs = {key: str(vm.get(key, "")) for key in ours}
            if theirs != {key: str(value) for key, value in ours.items()}:
                raise CloudError(f"{label}: a VM named {name!r} (id {vm['id']}) already exists and does not match "
                                 f"this node ({theirs}): remove it or rename the node")
            if state == "Error":
                api.destroy(vm, True, f"{label}: removing VM {vm['id']} left in Error by a failed deploy")
                continue
            return dict(vm)
        return None

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        api, label = self.api(props), self.label(props)
        try:
            location, image, size = api.resolve(str(props["zone"]), str(props["image"]), str(props["size"]))
        except LookupError as error:
            raise CloudError(f"{label}: {error}") from None
        ids = {"zoneid": str(location.id), "templateid": str(image.id), "serviceofferingid": str(size.id)}
        vm = self._existing(api, props, ids)
        if vm is None:
            vm_id = api.deploy(f"{label}: deploying", name=str(props["name"]), location=location, image=image,
                               size=size, key_pair=str(props["key_pair"]),
                               security_groups=[str(group) for group in props["security_groups"]],
                               user_data=str(props["user_data"]), display_name=str(props["display_name"]))
        else:
            vm_id = str(vm["id"])
        running = api.wait_running(vm_id, label, float(props["start_timeout"]))
        return dynamic.CreateResult(vm_id, self._outs(api, props, running))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        api = self.api(props)
        vm = api.vm(id_, f"{self.label(props)}: reading VM {id_}")
        if vm is None or vm.get("state") in DEAD_STATES:
            return dynamic.ReadResult(None, {})
        return dynamic.ReadResult(id_, self._outs(api, props, vm))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        api, label = self.api(props), self.label(props)
        vm = api.vm(id_, f"{label}: reading VM {id_}")
        if vm is None or vm.get("state") in ("Destroyed", "Expunging"):
            return
        try:
            api.destroy(vm, bool(props.get("expunge", True)), f"{label}: destroying VM {id_}")
        except CloudError:
            if api.vm(id_, f"{label}: reading VM {id_}") is not None:  # gone meanwhile counts as deleted
                raise


# --- the resources ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CloudTarget:
    """Which cloud: a libcloud driver name and its API endpoint (None: the driver's default host)."""

    driver: str
    endpoint: str | None = None

    def as_input(self) -> dict[str, Any]:
        return {"driver": self.driver, "endpoint": self.endpoint}


@dataclass(frozen=True)
class CloudKeyPairArgs:
    cloud: CloudTarget
    name: str
    public_key: str


class CloudKeyPair(dynamic.Resource, module="cloud", name="KeyPair"):
    """The public half of the deploy key, registered under `name` (its id)."""

    name: pulumi.Output[str]
    fingerprint: pulumi.Output[str]

    def __init__(self, resource_name: str, args: CloudKeyPairArgs, provider: KeyPairProvider,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(provider, resource_name, {
            "cloud": args.cloud.as_input(), "name": args.name, "public_key": args.public_key, "fingerprint": None,
        }, opts)


@dataclass(frozen=True)
class CloudSecurityGroupArgs:
    cloud: CloudTarget
    name: str
    description: str
    rules: Sequence[Rule]


class CloudSecurityGroup(dynamic.Resource, module="cloud", name="SecurityGroup"):
    """A security group whose ingress rules converge to `rules` (added and revoked in place)."""

    name: pulumi.Output[str]
    group_id: pulumi.Output[str]
    account: pulumi.Output[str]

    def __init__(self, resource_name: str, args: CloudSecurityGroupArgs, provider: SecurityGroupProvider,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(provider, resource_name, {
            "cloud": args.cloud.as_input(), "name": args.name, "description": args.description,
            "rules": [rule.as_dict() for rule in args.rules], "group_id": None, "account": None,
        }, opts)


@dataclass(frozen=True)
class CloudNodeArgs:
    cloud: CloudTarget
    name: str
    display_name: str
    zone: str
    image: str
    size: str
    key_pair: pulumi.Input[str]
    security_groups: Sequence[pulumi.Input[str]]
    user_data: pulumi.Input[str]  # secret: it carries the node's SSH host key
    start_timeout: int = 600
    expunge: bool = True


class CloudNode(dynamic.Resource, module="cloud", name="Node"):
    """A started VM; `address` is its public address, or its private one on a private guest network."""

    vm_id: pulumi.Output[str]
    state: pulumi.Output[str]
    address: pulumi.Output[str]
    public_ips: pulumi.Output[list[str]]
    private_ips: pulumi.Output[list[str]]

    def __init__(self, resource_name: str, args: CloudNodeArgs, provider: NodeProvider,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(provider, resource_name, {
            "cloud": args.cloud.as_input(), "name": args.name, "display_name": args.display_name,
            "zone": args.zone, "image": args.image, "size": args.size, "key_pair": args.key_pair,
            "security_groups": list(args.security_groups), "user_data": args.user_data,
            "start_timeout": args.start_timeout, "expunge": args.expunge,
            **{key: None for key in NodeProvider.OUTPUTS},
        }, opts)

"""A CloudStack API behind libcloud's own test `MockHttp`, for the cloud providers' tests.

Every answer is one of the CloudStack responses libcloud records in its wheel (`libcloud/test/compute/
fixtures/cloudstack`) with its ids, names and states replaced by what exists in this fake cloud, or one of our
error fixtures (`tests/data/cloudstack`, the API's error shapes and messages: errorcodes from CloudStack's
ApiErrorCode, texts from its sources). What the fake keeps is only which VMs, key pairs and groups exist and
the async jobs' results, so a test can run create, re-run, read and delete in sequence. Injected behaviour:
the next answers of a command (`fail_next`), how many listings a new VM stays Starting (`start_polls`), and a
fixed latency per API call (`latency`, spent by FakeCloudStackHttp before the call; for the benchmark).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlparse

import dill
import libcloud.test
import pulumi
from libcloud.common.cloudstack import CloudStackConnection
from libcloud.compute.drivers.cloudstack import CloudStackNodeDriver
from libcloud.test import MockHttp
from pulumi.dynamic import Config, ConfigureRequest

from components.cloud.api import md5_fingerprint
from tests.harness import dynamic_emulator
from tests.harness.dynamic_emulator import DynamicEmulator
from tests.harness.executing import Change
from tests.harness.recording import RecordingMocks
from tools.offline import unwrap_secrets

ROOT = Path(__file__).resolve().parents[2]
RECORDED = Path(libcloud.test.__file__).parent / "compute" / "fixtures" / "cloudstack"
OWN = ROOT / "tests" / "data" / "cloudstack"
API_KEY = "cookbook-test-api-key"
API_SECRET = "cookbook-test-secret"
ENDPOINT = "http://api.dummy.com/test/path"  # MockHttp routes /test/path to `_test_path`
PROJECT = "cluster-cookbook"
CREDENTIAL_KEYS = (f"{PROJECT}:cloud_api_key", f"{PROJECT}:cloud_api_secret")
ZONE, IMAGE, SIZE = "Sydney", "XEN Basic Ubuntu 10.04 Server x64 PV r2.0", "Compute Micro PRD"  # recorded names


def recorded(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((RECORDED / name).read_text(encoding="utf-8"))
    return document


def own(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((OWN / name).read_text(encoding="utf-8"))
    return document


class FakeCloudStack:
    def __init__(self, latency: float = 0.0, start_polls: int | None = 0, api_key: str = API_KEY,
                 boot: Callable[[str, str], str] | None = None):
        self.latency = latency
        # boot(name, user data) -> address: a deployed VM really boots somewhere (an integration test's host)
        self.boot = boot
        self.start_polls = start_polls  # listings a new VM stays Starting; None: it never runs
        self.api_key = api_key
        self.vms: dict[str, dict[str, Any]] = {}
        self.key_pairs: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.failures: dict[str, list[str]] = {}
        self._starting: dict[str, int] = {}
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()

    # --- test controls -------------------------------------------------------------------------------------
    def fail_next(self, command: str, fixture: str) -> None:
        """The next `command` is answered from our fixture `fixture` (an error, or a failed async job)."""
        with self._lock:
            self.failures.setdefault(command, []).append(fixture)

    def commands(self, name: str | None = None) -> list[str]:
        with self._lock:
            return [command for command, _ in self.calls if name is None or command == name]

    def params(self, command: str) -> list[dict[str, str]]:
        with self._lock:
            return [params for name, params in self.calls if name == command]

    def add_vm(self, name: str, **fields: Any) -> dict[str, Any]:
        """A VM that exists before the test (e.g. someone else's with the same name)."""
        vm = self._vm_record(name, {"displayname": name, **fields})
        with self._lock:
            self.vms[vm["id"]] = vm
        return vm

    # --- the API -------------------------------------------------------------------------------------------
    def handle(self, query: dict[str, str]) -> tuple[int, str]:
        command = query.pop("command")
        for key in ("response", "signature"):
            query.pop(key, None)
        if query.pop("apiKey", None) != self.api_key:
            return 401, ""
        with self._lock:
            self.calls.append((command, dict(query)))
            queued = self.failures.get(command)
            fixture = queued.pop(0) if queued else None
            status, body = getattr(self, f"_{command}")(query, fixture)
        return status, json.dumps(body)

    @staticmethod
    def _error(command: str, code: int, text: str) -> tuple[int, dict[str, Any]]:
        return code, {f"{command.lower()}response": {"uuidList": [], "errorcode": code, "errortext": text}}

    def _job(self, command: str, result: dict[str, Any], status: int = 1) -> dict[str, Any]:
        job_id = f"job-{next(self._ids)}"
        self.jobs[job_id] = {"queryasyncjobresultresponse": {
            "jobid": job_id, "jobstatus": status, "jobprocstatus": 0, "jobresultcode": 0 if status == 1 else 530,
            "jobresulttype": "object", "jobresult": result}}
        return {f"{command.lower()}response": {"jobid": job_id}}

    def _queryAsyncJobResult(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        return 200, self.jobs[query["jobid"]]

    # catalog: libcloud's recorded listings as they are
    def _listZones(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        return 200, recorded("listZones_default.json")

    def _listServiceOfferings(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        return 200, recorded("listServiceOfferings_default.json")

    def _listTemplates(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        return 200, recorded("listTemplates_default.json")

    # virtual machines
    def _vm_record(self, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        vm: dict[str, Any] = copy.deepcopy(recorded("queryAsyncJobResult_17164.json")
                                           ["queryasyncjobresultresponse"]["jobresult"]["virtualmachine"])
        number = next(self._ids)
        vm.update({"id": f"vm-{number}", "name": name, "state": "Running", "securitygroup": []})
        vm["nic"][0]["ipaddress"] = f"203.0.113.{number % 250 + 1}"
        vm.update(fields)
        return vm

    def _listVirtualMachines(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        for vm_id, polls in list(self._starting.items()):
            if polls == 0 and self.vms.get(vm_id, {}).get("state") == "Starting":
                self.vms[vm_id]["state"] = "Running"
            if polls is not None and polls > 0:
                self._starting[vm_id] = polls - 1
        listed = [copy.deepcopy(vm) for vm in self.vms.values()]
        if not listed:
            return 200, {"listvirtualmachinesresponse": {}}
        return 200, {"listvirtualmachinesresponse": {"count": len(listed), "virtualmachine": listed}}

    def _deployVirtualMachine(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        command = "deployVirtualMachine"
        if fixture is not None and not fixture.startswith("queryAsyncJobResult"):
            body = own(fixture)
            return int(next(iter(body.values()))["errorcode"]), body
        offerings = {str(o["id"]) for o in recorded("listServiceOfferings_default.json")
                     ["listserviceofferingsresponse"]["serviceoffering"]}
        templates = {str(t["id"]) for t in recorded("listTemplates_default.json")["listtemplatesresponse"]["template"]}
        if query.get("serviceofferingid") not in offerings or query.get("templateid") not in templates:
            return self._error(command, 431, "Unable to execute API command deployvirtualmachine due to invalid value")
        if query.get("keypair") not in self.key_pairs:
            return self._error(command, 431, f"A key pair with name '{query.get('keypair')}' was not found.")
        for group in filter(None, query.get("securitygroupnames", "").split(",")):
            if group not in self.groups:
                return self._error(command, 431, f"Unable to find group by name {group}")
        name = query["name"]
        if any(vm["name"] == name and vm["state"] not in ("Destroyed", "Expunging") for vm in self.vms.values()):
            return self._error(command, 431, f"The vm with hostName {name} already exists in the network domain")
        base64.b64decode(query.get("userdata", ""), validate=True)
        vm = self._vm_record(name, {
            "displayname": query.get("displayname", name), "zoneid": int(query["zoneid"]),
            "templateid": int(query["templateid"]), "serviceofferingid": int(query["serviceofferingid"]),
            "keypair": query["keypair"], "state": "Starting",
            "securitygroup": [{"name": group} for group in query.get("securitygroupnames", "").split(",") if group],
        })
        if self.boot is not None:
            vm["nic"][0]["ipaddress"] = self.boot(name, base64.b64decode(query.get("userdata", "")).decode())
        self.vms[vm["id"]] = vm
        if fixture is not None:  # the job fails: CloudStack leaves the VM in Error
            vm["state"] = "Error"
            job = own(fixture)
            job_id = f"job-{next(self._ids)}"
            job["queryasyncjobresultresponse"]["jobid"] = job_id
            self.jobs[job_id] = job
            return 200, {"deployvirtualmachineresponse": {"jobid": job_id, "id": vm["id"]}}
        self._starting[vm["id"]] = self.start_polls  # type: ignore[assignment]
        response = recorded("deployVirtualMachine_default.json")
        job = self._job(command, {"virtualmachine": copy.deepcopy(vm)})
        response["deployvirtualmachineresponse"].update({"jobid": job["deployvirtualmachineresponse"]["jobid"],
                                                         "id": vm["id"]})
        return 200, response

    def _destroyVirtualMachine(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        vm = self.vms.get(query["id"])
        if vm is None:
            return self._error("destroyVirtualMachine", 431, "Unable to find virtual machine with specified vmId")
        result = copy.deepcopy(vm)
        result["state"] = "Destroyed"
        if query.get("expunge") == "True":
            del self.vms[query["id"]]
        else:
            vm["state"] = "Destroyed"
        return 200, self._job("destroyVirtualMachine", {"virtualmachine": result})

    # key pairs
    def _listSSHKeyPairs(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        pairs = [pair for name, pair in self.key_pairs.items() if name == query.get("name", name)]
        if not pairs:
            return 200, recorded("listSSHKeyPairs_get_one_doesnt_exist.json")
        body = recorded("listSSHKeyPairs_default.json")
        body["listsshkeypairsresponse"].update({"count": len(pairs), "sshkeypair": copy.deepcopy(pairs)})
        return 200, body

    def _registerSSHKeyPair(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        name = query["name"]
        if name in self.key_pairs:
            return self._error("registerSSHKeyPair", 431, f"A key pair with name '{name}' already exists.")
        try:
            fingerprint = md5_fingerprint(query["publickey"])
        except (IndexError, ValueError):
            body = recorded("registerSSHKeyPair_error.json")
            return 431, body
        body = recorded("registerSSHKeyPair_default.json")
        body["registersshkeypairresponse"]["keypair"].update({"name": name, "fingerprint": fingerprint})
        self.key_pairs[name] = dict(body["registersshkeypairresponse"]["keypair"])
        return 200, body

    def _deleteSSHKeyPair(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        if self.key_pairs.pop(query["name"], None) is None:
            return self._error("deleteSSHKeyPair", 431, f"A key pair with name '{query['name']}' does not exist")
        return 200, recorded("deleteSSHKeyPair_default.json")

    # security groups
    def _listSecurityGroups(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        wanted = query.get("securitygroupname")
        groups = [group for name, group in self.groups.items() if wanted is None or name == wanted]
        if not groups:
            return 200, recorded("listSecurityGroups_no_groups.json")
        body = recorded("listSecurityGroups_default.json")
        body["listsecuritygroupsresponse"].update({"count": len(groups), "securitygroup": copy.deepcopy(groups)})
        return 200, body

    def _createSecurityGroup(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        name = query["name"]
        if name in self.groups:
            return self._error("createSecurityGroup", 431, f"Unable to create security group, a group with name "
                                                           f"{name} already exists.")
        body = recorded("createSecurityGroup_default.json")
        group = body["createsecuritygroupresponse"]["securitygroup"]
        group.update({"id": f"sg-{next(self._ids)}", "name": name, "description": query.get("description", "")})
        self.groups[name] = {**group, "ingressrule": [], "egressrule": [], "tags": []}
        return 200, body

    def _authorizeSecurityGroupIngress(self, query: dict[str, str],
                                       fixture: str | None) -> tuple[int, dict[str, Any]]:
        group = self.groups[query["securitygroupname"]]
        rule: dict[str, Any] = {"ruleid": f"rule-{next(self._ids)}", "protocol": query["protocol"].lower(),
                                "startport": int(query["startport"]), "endport": int(query["endport"])}
        if "cidrlist" in query:
            rule["cidr"] = query["cidrlist"]
        else:
            source = self.groups[query["usersecuritygrouplist[0].group"]]
            assert query["usersecuritygrouplist[0].account"] == source["account"], query
            rule.update({"securitygroupname": source["name"], "account": source["account"]})
        group["ingressrule"].append(rule)
        template = recorded("queryAsyncJobResult_17200.json")["queryasyncjobresultresponse"]["jobresult"]
        template["securitygroup"] = copy.deepcopy(group)
        return 200, self._job("authorizeSecurityGroupIngress", template)

    def _revokeSecurityGroupIngress(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        for group in self.groups.values():
            group["ingressrule"] = [rule for rule in group["ingressrule"] if rule["ruleid"] != query["id"]]
        return 200, self._job("revokeSecurityGroupIngress", {"success": True})

    def _deleteSecurityGroup(self, query: dict[str, str], fixture: str | None) -> tuple[int, dict[str, Any]]:
        name = query["name"]
        if name not in self.groups:
            return self._error("deleteSecurityGroup", 431, f"Unable to find network group {name}")
        in_use = [vm["name"] for vm in self.vms.values()
                  if vm["state"] != "Destroyed" and any(g["name"] == name for g in vm["securitygroup"])]
        if in_use:
            return self._error("deleteSecurityGroup", 536, "Cannot delete group when it's in use by virtual machines")
        del self.groups[name]
        return 200, recorded("deleteSecurityGroup_default.json")


class FakeCloudStackHttp(MockHttp):
    """libcloud's MockHttp routing every request for /test/path to the current fake cloud."""

    cloud: ClassVar[FakeCloudStack | None] = None
    # MockHttp answers through requests_mock, which patches `requests` process-wide for each request: one
    # request at a time. The latency (the network's share of a call) is spent before, so calls still overlap.
    _serial: ClassVar[threading.Lock] = threading.Lock()

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, raw: bool = False,
                stream: bool = False) -> Any:
        if self.cloud is not None and self.cloud.latency:
            time.sleep(self.cloud.latency)
        with self._serial:
            return super().request(method, url, body=body, headers=headers, raw=raw, stream=stream)

    def _test_path(self, method: str, url: str, body: Any, headers: Any) -> tuple[int, str, dict[str, str], str]:
        assert self.cloud is not None, "no fake cloud installed"
        status, text = self.cloud.handle(dict(parse_qsl(urlparse(url).query)))
        return status, text, {}, "OK" if status == 200 else "Error"


@contextmanager
def installed(cloud: FakeCloudStack) -> Iterator[FakeCloudStack]:
    """Points libcloud's CloudStack connections at the fake (as libcloud's own tests do) without polling
    delays; restores both afterwards."""
    saved = (CloudStackNodeDriver.connectionCls.conn_class, CloudStackConnection.poll_interval)
    CloudStackNodeDriver.connectionCls.conn_class = FakeCloudStackHttp
    CloudStackConnection.poll_interval = 0
    FakeCloudStackHttp.cloud = cloud
    try:
        yield cloud
    finally:
        CloudStackNodeDriver.connectionCls.conn_class, CloudStackConnection.poll_interval = saved
        FakeCloudStackHttp.cloud = None


class DynamicProviderMocks(RecordingMocks):
    """Unit-test mocks that run dynamic resources' providers as the engine and the `pulumi-python` provider host
    do (pulumi/dynamic/__main__.py): unpickle `__provider`, `configure` it with the stack's config, `check`,
    then `create`, or `diff` against the previous run's state and `update` (or replace: delete first, as the
    providers ask). Other resources are only recorded, as with RecordingMocks. Keeps state between runs."""

    def __init__(self, config: dict[str, Any], state: dict[str, tuple[str, dict[str, Any]]] | None = None):
        super().__init__()
        self.config = {key if ":" in key else f"{PROJECT}:{key}": value for key, value in config.items()}
        self.state = {} if state is None else state  # name -> (id, outputs)
        self.operations: list[tuple[str, str]] = []
        self._providers: dict[str, Any] = {}
        self._ops_lock = threading.Lock()

    def provider(self, serialized: str) -> Any:
        with self._ops_lock:
            if serialized not in self._providers:
                provider = dill.loads(base64.b64decode(serialized))
                provider.configure(ConfigureRequest(Config(self.config, PROJECT)))
                self._providers[serialized] = provider
            return self._providers[serialized]

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if not args.typ.startswith("pulumi-python:dynamic"):
            return super().new_resource(args)
        self.remember(args)
        news = unwrap_secrets(dict(args.inputs))
        provider = self.provider(news["__provider"])
        old = self.state.get(args.name)
        checked = provider.check(old[1] if old else {}, news)
        if checked.failures:
            raise RuntimeError("; ".join(f"{args.name}: {f.property}: {f.reason}" for f in checked.failures))
        news = checked.inputs
        if old is not None:
            diff = provider.diff(old[0], old[1], news)
            if not diff.changes:
                return old[0], old[1]
            if not diff.replaces:
                self._log("update", args.name)
                outs = {**(provider.update(old[0], old[1], news).outs or {}), "__provider": news["__provider"]}
                self.state[args.name] = (old[0], outs)
                return old[0], outs
            self._log("replace-delete", args.name)
            provider.delete(old[0], old[1])
        self._log("create", args.name)
        created = provider.create(news)
        outs = {**(created.outs or {}), "__provider": news["__provider"]}
        self.state[args.name] = (created.id, outs)
        return created.id, outs

    def _log(self, operation: str, name: str) -> None:
        with self._ops_lock:
            self.operations.append((operation, name))


class ConfiguredDynamicEmulator(DynamicEmulator):
    """tests/harness/dynamic_emulator.py's emulator, with each provider `configure`d from the stack's config
    first, as the `pulumi-python` provider host does (the cloud providers read their credentials there)."""

    def __init__(self, config: dict[str, Any]):
        self.config = Config({key if ":" in key else f"{PROJECT}:{key}": value for key, value in config.items()},
                             PROJECT)

    def _configured(self, inputs: dict[str, Any]) -> Any:
        provider = dill.loads(base64.b64decode(inputs[dynamic_emulator.PROVIDER_KEY]))
        provider.configure(ConfigureRequest(self.config))
        return provider

    def __call__(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        provider = self._configured(inputs)
        created = provider.create(dynamic_emulator._check(typ, provider, {}, inputs))
        return {**(created.outs or {}), dynamic_emulator.ID_KEY: created.id,
                dynamic_emulator.PROVIDER_KEY: inputs[dynamic_emulator.PROVIDER_KEY]}

    def plan(self, typ: str, old_inputs: dict[str, Any], old_outputs: dict[str, Any],
             inputs: dict[str, Any]) -> Change:
        provider = self._configured(inputs)
        news = dynamic_emulator._check(typ, provider, old_inputs, inputs)
        diff = provider.diff(str(old_outputs.get(dynamic_emulator.ID_KEY, "")), old_outputs, news)
        if diff.changes is False or (diff.changes is None and old_inputs == inputs):
            return "same"
        return "replace" if diff.replaces else "update"

"""SSH-reachable Linux hosts and Raspberry Pis: facts gathering and idempotent preparation.

One SSH session prepares a host and reports its facts (two on a Raspberry Pi whose kernel command line
changed: the second waits for the reboot and reports the facts of the new boot).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_command as command

from components.shared.connection import SECONDS_PER_DIAL, SshConnection
from components.shared.scripts import remote_invocation, render_script

FACTS_MARKER = "COOKBOOK_FACTS="
DEFAULT_PACKAGES = ("ca-certificates", "curl", "gnupg", "iptables", "jq")
PI_CGROUP_FLAGS = ("cgroup_memory=1", "cgroup_enable=memory")


@dataclass(frozen=True)
class HostArgs:
    connection: SshConnection
    hostname: str
    packages: Sequence[str] = DEFAULT_PACKAGES
    time_servers: Sequence[str] = ()
    kubernetes_networking: bool = True


@dataclass(frozen=True)
class RaspberryPiArgs(HostArgs):
    cmdline_flags: Sequence[str] = PI_CGROUP_FLAGS
    reboot_timeout: int = 300


def render_prepare_script(args: HostArgs) -> str:
    flags = args.cmdline_flags if isinstance(args, RaspberryPiArgs) else ()
    return render_script(
        ["shared/common.sh", "shared/files.sh", "nodes/facts.sh", "nodes/prepare.sh"],
        {
            "NODE_HOSTNAME": args.hostname,
            "PACKAGES": tuple(args.packages),
            "KUBERNETES_NETWORKING": args.kubernetes_networking,
            "TIME_SERVERS": tuple(args.time_servers),
            "PI_CMDLINE_FLAGS": tuple(flags),
        },
    )


def render_await_boot_script(previous_facts: dict[str, Any]) -> str:
    return render_script(
        ["shared/common.sh", "nodes/facts.sh", "nodes/await-boot.sh"],
        {
            "REBOOT_SCHEDULED": bool(previous_facts["reboot_scheduled"]),
            "PREVIOUS_BOOT_ID": str(previous_facts["boot_id"]),
        },
    )


def parse_facts(stdout: str) -> dict[str, Any]:
    """The facts a step printed; the last marker line wins."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(FACTS_MARKER):
            facts: dict[str, Any] = json.loads(line[len(FACTS_MARKER):])
            return facts
    raise ValueError(f"the host printed no {FACTS_MARKER} line; output ended with: {stdout[-500:]!r}")


class Host(pulumi.ComponentResource):
    """A Linux host reached over SSH, prepared for the cookbook's clusters."""

    TYPE: ClassVar[str] = "cookbook:node:Host"
    hostname: str
    address: str
    connection: SshConnection
    facts: pulumi.Output[dict[str, Any]]
    architecture: pulumi.Output[str]
    os_release: pulumi.Output[str]
    is_pi: pulumi.Output[bool]
    memory_cgroup: pulumi.Output[bool]

    def __init__(self, name: str, args: HostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        self.hostname = args.hostname
        self.address = args.connection.host
        self.connection = args.connection
        prepare = command.remote.Command(
            f"{name}-prepare",
            connection=args.connection.args(),
            create=remote_invocation(render_prepare_script(args), args.connection.become),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.facts = self._final_facts(name, args, prepare.stdout.apply(parse_facts))
        self.architecture = self.facts.apply(lambda facts: str(facts["architecture"]))
        self.os_release = self.facts.apply(lambda facts: str(facts["os_pretty_name"]))
        self.is_pi = self.facts.apply(lambda facts: bool(facts["is_pi"]))
        self.memory_cgroup = self.facts.apply(lambda facts: bool(facts["memory_cgroup"]))
        self.register_outputs({
            "address": self.address,
            "facts": self.facts,
            "architecture": self.architecture,
            "os_release": self.os_release,
            "is_pi": self.is_pi,
            "memory_cgroup": self.memory_cgroup,
        })

    def _final_facts(self, name: str, args: HostArgs,
                     prepared: pulumi.Output[dict[str, Any]]) -> pulumi.Output[dict[str, Any]]:
        return prepared


class RaspberryPi(Host):
    """A Raspberry Pi: a Host whose kernel command line also gets the cgroup flags Kubernetes needs,
    with a reboot (and a wait for it) only when the file actually changed."""

    TYPE: ClassVar[str] = "cookbook:node:RaspberryPi"

    def _final_facts(self, name: str, args: HostArgs,
                     prepared: pulumi.Output[dict[str, Any]]) -> pulumi.Output[dict[str, Any]]:
        timeout = args.reboot_timeout if isinstance(args, RaspberryPiArgs) else 300
        await_boot = command.remote.Command(
            f"{name}-await-boot",
            # Enough dials to outlast the reboot; each refused dial is retried with a capped backoff.
            connection=args.connection.args(
                dial_error_limit=max(args.connection.dial_error_limit, timeout // SECONDS_PER_DIAL)),
            create=prepared.apply(
                lambda facts: remote_invocation(render_await_boot_script(facts), args.connection.become)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return await_boot.stdout.apply(parse_facts)

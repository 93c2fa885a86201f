"""SSH-reachable Linux hosts and Raspberry Pis: facts gathering and idempotent preparation.

Resources (for a host `n`):

    n-prepare       every host: hostname, packages, swap, kernel networking, time sync, and on a Pi the
                    cgroup flags in cmdline.txt; prints the host's facts. Never reboots. Hosts in parallel.
    n-reboot        Pi only: when the running kernel lacks a flag of cmdline.txt (decided from the host,
                    so an interrupted run still reboots next time), waits for the host's health gates,
                    then schedules the reboot; otherwise checks the boot state (flags, memory cgroup on,
                    swap off) and prints the facts. Its input carries what the prepare step found
                    missing (and in which boot), so it runs whenever a prepare run finds a flag missing.
    n-await-boot    Pi only, and runs only after a scheduled reboot: waits for the new boot id, checks the
                    boot state, waits for the health gates again, prints the facts of the new boot.

`RaspberryPiArgs.reboot_after` chains reboots: the composition passes the previous chained host's `ready`
resource, so hosts with a cluster role (etcd, control-plane, worker, zookeeper) reboot one at a time (each behind
its gates) while the others reboot in parallel. SSH sessions: 1 per Linux host, 2 per Pi, 3 per Pi that reboots.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_command as command

from components.nodes.gates import HealthGate, gate_fragments, gate_params, gate_texts
from components.shared.connection import SECONDS_PER_DIAL, SshConnection
from components.shared.scripts import ShellValue, render_script, template

FACTS_MARKER = "COOKBOOK_FACTS="
PENDING_MARKER = "COOKBOOK_PENDING_FLAGS="
DEFAULT_PACKAGES = ("ca-certificates", "curl", "gnupg", "iptables", "jq")
PI_CGROUP_FLAGS = ("cgroup_memory=1", "cgroup_enable=memory")
# The `nodes` stack output of each host: output key -> fact key (None: not a fact).
NODE_OUTPUTS: Mapping[str, str | None] = {
    "address": None,
    "architecture": "architecture",
    "os": "os_pretty_name",
    "kernel": "kernel",
    "is_pi": "is_pi",
    "model": "model",
    "memory_cgroup": "memory_cgroup",
    "cgroup_version": "cgroup_version",
    "missing_kernel_modules": "missing_kernel_modules",
    "wireguard": "wireguard",
    "usr_read_only": "usr_read_only",
}


@dataclass(frozen=True)
class HostArgs:
    connection: SshConnection
    hostname: str
    packages: Sequence[str] = DEFAULT_PACKAGES
    time_servers: Sequence[str] = ()
    kubernetes_networking: bool = True
    docker: bool = False  # install the Docker engine when missing (nodes that run containers: Mesos)


@dataclass(frozen=True)
class RaspberryPiArgs(HostArgs):
    cmdline_flags: Sequence[str] = PI_CGROUP_FLAGS
    reboot_timeout: int = 300
    gates: Sequence[HealthGate] = ()  # what must hold before this Pi reboots, and again after
    reboot_after: pulumi.Resource | None = None  # this Pi reboots only once that resource is done


def _step_script(fragments: Sequence[str], params: dict[str, ShellValue],
                 gates: Sequence[HealthGate] = ()) -> str:
    """A node step; one that runs `nodes/gates.sh` also gets the gates' fragments and parameters."""
    if "nodes/gates.sh" not in fragments:
        return render_script(fragments, params)
    runner = fragments.index("nodes/gates.sh")
    script = render_script([*fragments[:runner], *gate_fragments(gates), *fragments[runner:]],
                           {**params, **gate_params(gates, params)})
    # Rendered gate fragments go right before the runner: after the header, before any step runs.
    runner_text = template("nodes/gates.sh").rstrip("\n")
    return script.replace(runner_text, gate_texts(gates) + runner_text, 1)


def render_prepare_script(args: HostArgs) -> str:
    flags = args.cmdline_flags if isinstance(args, RaspberryPiArgs) else ()
    return _step_script(
        ["shared/common.sh", "shared/files.sh", "nodes/facts.sh", "nodes/pi.sh", "nodes/docker.sh", "nodes/swap.sh",
         "nodes/prepare.sh"],
        {
            "NODE_HOSTNAME": args.hostname,
            "PACKAGES": tuple(args.packages),
            "KUBERNETES_NETWORKING": args.kubernetes_networking,
            "TIME_SERVERS": tuple(args.time_servers),
            "PI_CMDLINE_FLAGS": tuple(flags),
            "INSTALL_DOCKER": args.docker,
            "DOCKER_USER": args.connection.user,
        },
    )


def render_reboot_script(args: RaspberryPiArgs, prepared: str = "") -> str:
    """`prepared`: the prepare step's output. The reboot step decides from the host again, but what the
    prepare step found missing from the running kernel, and in which boot, is part of its input: so a prepare
    run that finds a flag missing (again, in a later boot) always makes this step run again."""
    pending = parse_pending(prepared)
    boot_id = str(parse_facts(prepared)["boot_id"]) if pending else ""
    return _step_script(["shared/common.sh", "nodes/facts.sh", "nodes/pi.sh", "nodes/gates.sh", "nodes/reboot.sh"],
                        {"PI_CMDLINE_FLAGS": tuple(args.cmdline_flags), "PENDING_AT_PREPARE": pending,
                         "PENDING_IN_BOOT": boot_id}, args.gates)


def render_await_boot_script(args: RaspberryPiArgs, previous_facts: Mapping[str, Any]) -> str:
    return _step_script(
        ["shared/common.sh", "nodes/facts.sh", "nodes/pi.sh", "nodes/gates.sh", "nodes/await-boot.sh"],
        {"PREVIOUS_BOOT_ID": str(previous_facts["boot_id"]), "PI_CMDLINE_FLAGS": tuple(args.cmdline_flags)},
        args.gates,
    )


def parse_pending(stdout: str) -> tuple[str, ...]:
    """The flags the prepare step found the running kernel without (none when it printed no such line)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(PENDING_MARKER):
            return tuple(line[len(PENDING_MARKER):].split())
    return ()


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
    address: pulumi.Input[str]  # an Output for a cloud node: its VM's address, known once the VM runs
    connection: SshConnection
    ready: pulumi.Resource  # the host's last step: what waits for this host waits for it
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
            create=args.connection.command_line(render_prepare_script(args)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ready, self.facts = self._settle(name, args, prepare)
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

    def _settle(self, name: str, args: HostArgs,
                prepare: command.remote.Command) -> tuple[pulumi.Resource, pulumi.Output[dict[str, Any]]]:
        """The host's last step and the facts it reports."""
        return prepare, prepare.stdout.apply(parse_facts)

    def known_address(self, recipe: str) -> str:
        """The address as the config gives it, for recipes that run on `nodes` entries only (ZooKeeper, Mesos:
        the stack config refuses their roles on cloud nodes, whose address is known only once the VM runs)."""
        if not isinstance(self.address, str):
            raise TypeError(f"{recipe} runs on `nodes` entries only: {self.hostname}'s address is known only once "
                            "its VM runs")
        return self.address

    def outputs(self) -> dict[str, pulumi.Input[Any]]:
        """The host's entry of the `nodes` stack output (keys: NODE_OUTPUTS)."""
        def fact(key: str) -> pulumi.Output[Any]:
            return self.facts.apply(lambda facts: facts[key])

        return {output: self.address if key is None else fact(key) for output, key in NODE_OUTPUTS.items()}


class RaspberryPi(Host):
    """A Raspberry Pi: a Host whose kernel command line also gets the cgroup flags Kubernetes needs, and a
    reboot (behind its health gates, after `reboot_after`) whenever the running kernel lacks one."""

    TYPE: ClassVar[str] = "cookbook:node:RaspberryPi"

    def _settle(self, name: str, args: HostArgs,
                prepare: command.remote.Command) -> tuple[pulumi.Resource, pulumi.Output[dict[str, Any]]]:
        if not isinstance(args, RaspberryPiArgs):
            raise TypeError(f"RaspberryPi {name!r} needs RaspberryPiArgs, got {type(args).__name__}")
        connection = args.connection
        reboot = command.remote.Command(
            f"{name}-reboot",
            connection=connection.args(),
            # After this host's prepare step wrote cmdline.txt (its output is an input here).
            create=prepare.stdout.apply(
                lambda stdout: connection.command_line(render_reboot_script(args, stdout))),
            opts=pulumi.ResourceOptions(
                parent=self,
                # A chained host reboots only after the previous one came back and passed its gates.
                depends_on=[args.reboot_after] if args.reboot_after is not None else []),
        )
        before = reboot.stdout.apply(parse_facts)

        def await_command(facts: dict[str, Any]) -> str | None:
            # No reboot scheduled: nothing to wait for, and no SSH session (the provider runs no create).
            if not facts["reboot_scheduled"]:
                return None
            return connection.command_line(render_await_boot_script(args, facts))

        await_boot = command.remote.Command(
            f"{name}-await-boot",
            # Enough dials to outlast the reboot; each refused dial is retried with a capped backoff.
            connection=connection.args(
                dial_error_limit=max(connection.dial_error_limit, args.reboot_timeout // SECONDS_PER_DIAL)),
            create=before.apply(await_command),
            opts=pulumi.ResourceOptions(parent=self),
        )

        def final(pair: list[Any]) -> dict[str, Any]:
            facts, stdout = pair
            return parse_facts(stdout) if facts["reboot_scheduled"] else facts

        return await_boot, pulumi.Output.all(before, await_boot.stdout).apply(final)

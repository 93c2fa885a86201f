"""A ZooKeeper ensemble over SSH hosts: the Debian package or a checksum-verified release tarball, a systemd
unit per server, a fixed membership record, rolling restarts that keep a quorum (followers one at a time, the
leader last) and a health gate on the ensemble's own view of itself.

Resources (for an ensemble `zookeeper` and servers a, b, c, later d):

    zookeeper-super-password            random: the super user's password (reconfiguration needs it)
    zookeeper-tarball-a ...             CopyToRemote (tarball mode): the release tarball
    zookeeper-install-a ...             remote command on a: package or tarball, Java, the zookeeper user;
                                        in parallel on every server
    zookeeper-server-a -> -b -> -c      remote commands, one at a time: config files, unit, start; restart
                                        when the configuration changed (a follower at once, the leader later)
    zookeeper-restart-a -> -b -> -c     remote commands, one at a time: restart a server still running an older
                                        configuration (only a server that was leading is left by then)
    zookeeper-remove-x                  remote command on a: removes server x (listed in `removed`) through a
                                        serving server, one at a time, before any join (`reconfig -remove`)
    zookeeper-join-d                    remote command on d: joins the running ensemble (dynamic reconfiguration)
    zookeeper-health                    remote command on a: every server serves, one leader, all synced

Stability rule (as for etcd): a server's inputs depend only on that server and the bootstrap record
(`bootstrap` servers with their `ids` and addresses), never on the current server list, so adding or removing servers
never restarts the existing ones (a removed bootstrap server's address stays part of the record). ZooKeeper runs
with dynamic reconfiguration on: it keeps its own membership (in its data directory) once started, servers beyond
the record join with `reconfig -add`, and servers listed in `removed` leave with `reconfig -remove`; nothing runs
on a removed server's host, and its id is never given to another server.

Ordering rule: no server step starts before every server's host is done (prepared, and a Pi rebooted behind its
gates): a restart of one server while another server's Pi reboots could cost the quorum.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pulumi
import pulumi_command as command
import pulumi_random as random

from components.nodes.host import Host
from components.shared.addresses import bracketed
from components.shared.scripts import remote_invocation, render_script, template

INSTALL_MODES = ("package", "tarball")
MAX_SERVERS = 7
MAX_ID = 255
SERVICE = "cookbook-zookeeper"
DISTRIBUTION_SERVICE = "zookeeper.service"  # zookeeperd's init script, masked before anything is installed
CONFIG_DIR = "/etc/cookbook-zookeeper"
UNIT_FILE = f"/etc/systemd/system/{SERVICE}.service"
START_PREPARE_FILE = "/usr/local/lib/cookbook-zookeeper/start-prepare"  # the unit's ExecStartPre runs it
DATA_ROOT = "/var/lib/cookbook-zookeeper"
TARBALL_ROOT = "/opt/cookbook-zookeeper"
INSTALL_ENV = f"{CONFIG_DIR}/install.env"  # the install step's record of where ZooKeeper lives
# The Debian jar's manifest lists its dependencies; slf4j-simple sends the server's log to the journal.
PACKAGE_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
PACKAGE_CLI_CLASSPATH = "/usr/share/java/zookeeper.jar"
# Four-letter words ZooKeeper 3.8 knows; srvr is required (the health gate and the restarts read it).
FOUR_LETTER_WORDS = ("conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "isro", "mntr", "ruok", "srst",
                     "srvr", "stat", "stmk", "wchc", "wchp", "wchs")
DEFAULT_FOUR_LETTER_WORDS = ("mntr", "ruok", "srvr")
SECRET_OUTPUTS = ["stdout", "stderr"]
_CONFIGURATION_LINE = re.compile(r"^configuration ([0-9a-f]{64})$", re.MULTILINE)


@dataclass(frozen=True)
class Tarball:
    """A ZooKeeper binary release on the machine running Pulumi (apache-zookeeper-3.8.4-bin.tar.gz)."""

    path: str
    sha256: str


@dataclass(frozen=True)
class ZooKeeperEnsembleArgs:
    """One ensemble. `servers` are the current servers, in a stable order; `ids` is the record of every server's
    id (`myid`), which never changes. `bootstrap` names the servers that formed the ensemble (default: all of
    `servers`) and must never change after the first deployment; others join the running ensemble. `removed` maps
    servers that are gone (dead or retired) to their addresses: each leaves the ensemble by `reconfig -remove`
    through a serving server; nothing runs on its host; its id stays in `ids`, never given to another server."""

    servers: Sequence[Host]
    ids: Mapping[str, int]
    bootstrap: Sequence[str] = ()
    removed: Mapping[str, str] = field(default_factory=dict)
    install: str = "package"
    version: str = "3.8.0"
    tarball: Tarball | None = None
    client_port: int = 2181
    quorum_port: int = 2888
    election_port: int = 3888
    tick_time: int = 2000
    init_limit: int = 10
    sync_limit: int = 5
    heap_mb: int = 256
    snap_retain_count: int = 3
    purge_interval_hours: int = 1
    four_letter_words: Sequence[str] = DEFAULT_FOUR_LETTER_WORDS
    health_timeout: int = 300


def validate(args: ZooKeeperEnsembleArgs) -> list[str]:
    """Problems with `args`, each naming its field."""
    problems: list[str] = []
    names = [host.hostname for host in args.servers]
    size = len(names)
    if size == 0 or size % 2 == 0 or size > MAX_SERVERS:
        problems.append(f"servers: {size} servers; a ZooKeeper ensemble needs an odd number between 1 and "
                        f"{MAX_SERVERS}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"servers: duplicate server names {', '.join(duplicates)}")
    missing = [name for name in names if name not in args.ids]
    if missing:
        problems.append(f"ids: no id for {', '.join(missing)}")
    for name, server_id in sorted(args.ids.items()):
        if not 1 <= server_id <= MAX_ID:
            problems.append(f"ids.{name}: {server_id} is not between 1 and {MAX_ID}")
    reused = sorted({i for i in args.ids.values() if list(args.ids.values()).count(i) > 1})
    if reused:
        problems.append(f"ids: ids {', '.join(map(str, reused))} are given to more than one server")
    reused_names = sorted(set(names) & set(args.removed))
    if reused_names:
        problems.append(f"removed: {', '.join(reused_names)} cannot be both removed and a server (a replacement "
                        "needs a new name and id: a removed server's identity is never reused)")
    without_id = sorted(name for name in args.removed if name not in args.ids)
    if without_id:
        problems.append(f"ids: no id for removed {', '.join(without_id)} (its id is what leaves the ensemble, and "
                        "stays taken)")
    for index, name in enumerate(args.bootstrap):
        if name not in names and name not in args.removed:
            problems.append(f"bootstrap[{index}]: {name!r} is neither a server nor in removed")
    if args.install not in INSTALL_MODES:
        problems.append(f"install: must be one of {', '.join(INSTALL_MODES)}, got {args.install!r}")
    if args.install == "tarball" and args.tarball is None:
        problems.append("tarball: the tarball install mode needs a tarball (path and sha256)")
    ports = {"client_port": args.client_port, "quorum_port": args.quorum_port, "election_port": args.election_port}
    if len(set(ports.values())) != len(ports):
        problems.append(f"ports: client, quorum and election ports must differ, got {ports}")
    if "srvr" not in args.four_letter_words:
        problems.append("four_letter_words: must include srvr (the health gate and the restarts read it)")
    unknown = sorted(set(args.four_letter_words) - set(FOUR_LETTER_WORDS))
    if unknown:
        problems.append(f"four_letter_words: unknown {', '.join(unknown)}; known: {', '.join(FOUR_LETTER_WORDS)}")
    return problems


# --- pure renderers ---------------------------------------------------------------------------------
def _fill(relative_path: str, **values: str) -> str:
    return string.Template(template(relative_path)).substitute(values).rstrip("\n")


def endpoint(address: str, port: int) -> str:
    """HOST:PORT as the scripts read it (an IPv6 host unbracketed: the port follows the last colon)."""
    return f"{address}:{port}"


def connect_string(args: ZooKeeperEnsembleArgs, addresses: Sequence[str]) -> str:
    """The client connect string, `a:2181,b:2181,c:2181`, as ZooKeeper clients take it."""
    return ",".join(f"{bracketed(address)}:{args.client_port}" for address in addresses)


def server_line(args: ZooKeeperEnsembleArgs, server_id: int, address: str) -> str:
    """One member as ZooKeeper writes it in its dynamic configuration (so a comparison with it is exact)."""
    return (f"server.{server_id}={bracketed(address)}:{args.quorum_port}:{args.election_port}:participant;"
            f"0.0.0.0:{args.client_port}")


def bootstrap_names(args: ZooKeeperEnsembleArgs) -> list[str]:
    return list(args.bootstrap) if args.bootstrap else [host.hostname for host in args.servers]


def data_dir(server: str) -> str:
    return f"{DATA_ROOT}/{server}"


def runtime_dir(server: str) -> str:
    return f"{DATA_ROOT}/{server}/conf"


def install_dir(args: ZooKeeperEnsembleArgs) -> str:
    return f"{TARBALL_ROOT}/apache-zookeeper-{args.version}-bin"


def tarball_remote_path(args: ZooKeeperEnsembleArgs) -> str:
    return f"/var/tmp/cookbook-apache-zookeeper-{args.version}-bin.tar.gz"


def render_install_env(args: ZooKeeperEnsembleArgs) -> str:
    """The install step's record: the server's and the command line client's Java classpath."""
    if args.install == "tarball":
        # The JVM expands `dir/*` itself (systemd passes it through unexpanded).
        server = client = f"{install_dir(args)}/lib/*"
    else:
        server, client = PACKAGE_CLASSPATH, PACKAGE_CLI_CLASSPATH
    return (f"# Where ZooKeeper {args.version if args.install == 'tarball' else '(Debian package)'} lives; written "
            f"by cluster-cookbook's install step.\nZOOKEEPER_CLASSPATH={server}\nZOOKEEPER_CLI_CLASSPATH={client}")


def render_static_config(args: ZooKeeperEnsembleArgs, server: str) -> str:
    """zoo.cfg without its membership, built as data and written sorted (`key=value` per line)."""
    settings: dict[str, str | int] = {
        "tickTime": args.tick_time,
        "initLimit": args.init_limit,
        "syncLimit": args.sync_limit,
        "dataDir": f"{data_dir(server)}/data",
        "dataLogDir": f"{data_dir(server)}/datalog",
        "autopurge.snapRetainCount": args.snap_retain_count,
        "autopurge.purgeInterval": args.purge_interval_hours,
        "4lw.commands.whitelist": ",".join(sorted(set(args.four_letter_words))),
        "admin.enableServer": "false",
        "reconfigEnabled": "true",
        "standaloneEnabled": "false",
    }
    return "\n".join(f"{key}={value}" for key, value in sorted(settings.items()))


def render_jvm_args(args: ZooKeeperEnsembleArgs) -> str:
    options = [f"-Xms{args.heap_mb}m", f"-Xmx{args.heap_mb}m", "-XX:+ExitOnOutOfMemoryError"]
    if args.install == "tarball":
        options.append(f"-Dlogback.configurationFile={install_dir(args)}/conf/logback.xml")
    return "\n".join(options)


def render_membership(args: ZooKeeperEnsembleArgs, addresses: Mapping[str, str]) -> str:
    """The membership record of a bootstrap server: read only before its first start (`addresses` includes the
    removed bootstrap servers': the record never changes)."""
    return "\n".join(sorted(server_line(args, args.ids[name], addresses[name]) for name in bootstrap_names(args)))


def render_unit(args: ZooKeeperEnsembleArgs, server: str) -> str:
    return _fill("zookeeper/zookeeper.service", server=server, server_id=str(args.ids[server]),
                 config_dir=CONFIG_DIR, runtime_dir=runtime_dir(server))


def _server_params(args: ZooKeeperEnsembleArgs, server: str) -> dict[str, Any]:
    return {"SERVER_NAME": server, "SERVER_ID": str(args.ids[server]), "CONFIG_DIR": CONFIG_DIR,
            "UNIT_FILE": UNIT_FILE, "RUNTIME_DIR": runtime_dir(server),
            "STARTED_WITH": f"{data_dir(server)}/started-with"}


def render_start_prepare(args: ZooKeeperEnsembleArgs, server: str) -> str:
    return render_script(["zookeeper/common.sh", "zookeeper/start-prepare.sh"], _server_params(args, server))


def render_install_script(args: ZooKeeperEnsembleArgs) -> str:
    return render_script(
        ["shared/common.sh", "shared/files.sh", "zookeeper/install.sh"],
        {
            "INSTALL_MODE": args.install,
            "TARBALL_PATH": tarball_remote_path(args) if args.install == "tarball" else "",
            "TARBALL_SHA256": args.tarball.sha256 if args.tarball and args.install == "tarball" else "",
            "INSTALL_DIR": install_dir(args),
            "DISTRIBUTION_SERVICE": DISTRIBUTION_SERVICE,
            "INSTALL_ENV": INSTALL_ENV,
            "INSTALL_ENV_CONTENT": render_install_env(args),
        },
    )


def _rolling_params(args: ZooKeeperEnsembleArgs, server: str) -> dict[str, Any]:
    return {
        **_server_params(args, server),
        "SERVICE": SERVICE,
        "CLIENT_PORT": args.client_port,
        "HEALTH_TIMEOUT": args.health_timeout,
    }


def render_configure_script(args: ZooKeeperEnsembleArgs, server: str, membership: str) -> str:
    """The first step of a server; `membership` is the record (empty for a server that joins)."""
    return render_script(
        ["shared/common.sh", "shared/files.sh", "zookeeper/common.sh", "zookeeper/rolling.sh",
         "zookeeper/configure.sh"],
        {
            **_rolling_params(args, server),
            "DATA_DIR": data_dir(server),
            "STATIC_CONTENT": render_static_config(args, server),
            "JVM_CONTENT": render_jvm_args(args),
            "MEMBERSHIP_CONTENT": membership,
            "UNIT_CONTENT": render_unit(args, server),
            "START_PREPARE_FILE": START_PREPARE_FILE,
            "START_PREPARE_SCRIPT": render_start_prepare(args, server),
        },
    )


def render_restart_script(args: ZooKeeperEnsembleArgs, server: str) -> str:
    return render_script(
        ["shared/common.sh", "zookeeper/common.sh", "zookeeper/rolling.sh", "zookeeper/restart.sh"],
        _rolling_params(args, server),
    )


def render_health_script(args: ZooKeeperEnsembleArgs, servers: Mapping[str, str]) -> str:
    """The gate, run on the first of `servers` (name -> address): it reads that server's membership file."""
    return render_script(
        ["shared/common.sh", "zookeeper/common.sh", "zookeeper/health.sh"],
        {
            "SERVER_NAMES": tuple(servers),
            "SERVER_ENDPOINTS": tuple(endpoint(address, args.client_port) for address in servers.values()),
            "MEMBERS": tuple(sorted(server_line(args, args.ids[name], address) for name, address in servers.items())),
            "MEMBERSHIP_CONFIG": f"{runtime_dir(next(iter(servers)))}/zoo.cfg",
            "TIMEOUT": args.health_timeout,
        },
    )


def render_remove_script(args: ZooKeeperEnsembleArgs, target: str, servers: Sequence[str]) -> str:
    """Removes `target` (a name in `args.removed`) through a serving one of `servers` (the current servers'
    addresses)."""
    return render_script(
        ["shared/common.sh", "zookeeper/common.sh", "zookeeper/cli.sh", "zookeeper/remove.sh"],
        {
            "TARGET_NAME": target,
            "TARGET_ID": str(args.ids[target]),
            "SERVER_ENDPOINTS": tuple(endpoint(address, args.client_port) for address in servers),
            "CONFIG_DIR": CONFIG_DIR,
            "TIMEOUT": args.health_timeout,
        },
    )


def render_join_script(args: ZooKeeperEnsembleArgs, server: str, address: str, seeds: Sequence[str]) -> str:
    """Adds `server` to the running ensemble through the servers before it (`seeds`, addresses)."""
    return render_script(
        ["shared/common.sh", "shared/files.sh", "zookeeper/common.sh", "zookeeper/cli.sh", "zookeeper/join.sh"],
        {
            "SERVER_NAME": server,
            "CONFIG_DIR": CONFIG_DIR,
            "SERVICE": SERVICE,
            "OWN_LINE": server_line(args, args.ids[server], address),
            "SEED_ENDPOINTS": tuple(endpoint(seed, args.client_port) for seed in seeds),
            "CLIENT_PORT": args.client_port,
            "TIMEOUT": args.health_timeout,
        },
    )


def configuration_of(stdout: str) -> str:
    """The configuration hash a server's first step reported (its second step runs again when it changes)."""
    found = _CONFIGURATION_LINE.findall(stdout or "")
    return found[-1] if found else ""


class ZooKeeperEnsemble(pulumi.ComponentResource):
    """A ZooKeeper ensemble over SSH hosts. Outputs resolve only after the ensemble reported healthy."""

    TYPE: ClassVar[str] = "cookbook:zookeeper:Ensemble"
    connect_string: pulumi.Output[str]
    servers: pulumi.Output[list[str]]
    health: pulumi.Output[str]

    def __init__(self, name: str, args: ZooKeeperEnsembleArgs, opts: pulumi.ResourceOptions | None = None):
        problems = validate(args)
        if problems:
            raise ValueError(f"ZooKeeperEnsemble {name!r}: " + "; ".join(problems))
        super().__init__(self.TYPE, name, None, opts)
        if len(args.servers) == 1:
            pulumi.log.warn(f"ZooKeeper ensemble {name!r} has a single server: it tolerates no failure", self)

        hosts = {host.hostname: host for host in args.servers}
        addresses = {**dict(args.removed), **{host.hostname: host.known_address("ZooKeeper") for host in args.servers}}
        bootstrap = bootstrap_names(args)
        ordered = [hosts[n] for n in bootstrap if n in hosts] + [h for h in args.servers if h.hostname not in bootstrap]
        membership = render_membership(args, addresses)

        password = random.RandomPassword(
            f"{name}-super-password", length=32, special=False,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]))
        super_password = pulumi.Output.secret(password.result)

        installs = {host.hostname: self._install(name, args, host) for host in ordered}
        firsts: list[command.remote.Command] = []
        for host in ordered:
            firsts.append(self._first_step(name, args, host, membership if host.hostname in bootstrap else "",
                                           installs[host.hostname], ordered, super_password, firsts))
        seconds: list[command.remote.Command] = []
        for host, first in zip(ordered, firsts, strict=True):
            seconds.append(command.remote.Command(
                f"{name}-restart-{host.hostname}",
                connection=host.connection.args(),
                create=remote_invocation(render_restart_script(args, host.hostname), host.connection.become),
                # Runs again whenever the server's first step reported another configuration.
                triggers=[first.stdout.apply(configuration_of)],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # After every server's first step (followers restarted), one at a time: the leader last.
                    depends_on=[*firsts, *seconds]),
            ))

        anchor = ordered[0]
        changes: list[command.remote.Command] = []

        def membership_change(resource_name: str, on: Host, script: str) -> None:
            changes.append(command.remote.Command(
                resource_name,
                connection=on.connection.args(),
                create=remote_invocation(script, on.connection.become),
                stdin=super_password.apply(lambda text: text + "\n"),
                logging=command.remote.Logging.NONE,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # One membership change at a time, after every server's steps (so after any restart):
                    # removals first (a dead server leaves before its replacement joins), then joins in order.
                    depends_on=[*firsts, *seconds, *changes],
                    additional_secret_outputs=SECRET_OUTPUTS),
            ))

        current_addresses = [host.known_address("ZooKeeper") for host in ordered]
        for target in sorted(args.removed):  # through the anchor's command line client
            membership_change(f"{name}-remove-{target}", anchor,
                              render_remove_script(args, target, current_addresses))
        seeds = [host.known_address("ZooKeeper") for host in ordered if host.hostname in bootstrap]
        for host in (host for host in ordered if host.hostname not in bootstrap):
            # Through the servers before it (never only the bootstrap record: its servers may be gone by now).
            membership_change(f"{name}-join-{host.hostname}", host,
                              render_join_script(args, host.hostname, host.known_address("ZooKeeper"), seeds))
            seeds = [*seeds, host.known_address("ZooKeeper")]

        current = {host.hostname: host.known_address("ZooKeeper") for host in ordered}
        health = command.remote.Command(
            f"{name}-health",
            connection=anchor.connection.args(),
            create=remote_invocation(render_health_script(args, current), anchor.connection.become),
            # Checked again whenever a server's configuration changed.
            triggers=[first.stdout.apply(configuration_of) for first in firsts],
            opts=pulumi.ResourceOptions(
                parent=self,
                # The gate checks the ensemble every server step and membership change left behind.
                depends_on=[*firsts, *seconds, *changes]),
        )

        def after_health(value: pulumi.Input[Any]) -> pulumi.Output[Any]:
            return pulumi.Output.all(health.stdout, value).apply(lambda both: both[1])

        self.health = health.stdout
        self.connect_string = after_health(connect_string(args, list(current.values())))
        self.servers = after_health([endpoint(address, args.client_port) for address in current.values()])
        self.register_outputs({
            "connect_string": self.connect_string,
            "servers": self.servers,
            "health": self.health,
        })

    def _install(self, name: str, args: ZooKeeperEnsembleArgs, host: Host) -> command.remote.Command:
        # The host is prepared first (hostname, apt sources, base packages).
        depends: list[pulumi.Resource] = [host]
        if args.install == "tarball" and args.tarball is not None:
            depends.append(command.remote.CopyToRemote(
                f"{name}-tarball-{host.hostname}",
                connection=host.connection.args(),
                source=pulumi.FileAsset(args.tarball.path),
                remote_path=tarball_remote_path(args),
                # /var/tmp and the login exist once the host is prepared.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[host]),
            ))
        return command.remote.Command(
            f"{name}-install-{host.hostname}",
            connection=host.connection.args(),
            create=remote_invocation(render_install_script(args), host.connection.become),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )

    def _first_step(self, name: str, args: ZooKeeperEnsembleArgs, host: Host, membership: str,
                    install: command.remote.Command, servers: Sequence[Host], super_password: pulumi.Output[str],
                    previous: Sequence[command.remote.Command]) -> command.remote.Command:
        script = render_configure_script(args, host.hostname, membership)
        return command.remote.Command(
            f"{name}-server-{host.hostname}",
            connection=host.connection.args(),
            create=remote_invocation(script, host.connection.become),
            stdin=super_password.apply(lambda text: text + "\n"),
            logging=command.remote.Logging.NONE,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Installed first; one server at a time; and only once every server's host is done (a Pi
                # rebooting for its kernel flags is a server down): a restart never costs the quorum.
                depends_on=[install, *previous[-1:], *servers],
                additional_secret_outputs=SECRET_OUTPUTS),
        )


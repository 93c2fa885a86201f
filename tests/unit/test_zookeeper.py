"""ZooKeeper: config validation, the resource graph, growth stability, secrets, rendered text (shellcheck,
systemd-analyze), and the renderers' exact output."""

from __future__ import annotations

import base64
import hashlib
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from components.zookeeper import ensemble as zk
from tests.harness.fixtures import FAKE_PRIVATE_KEY
from tests.harness.program import run_program
from tests.harness.recording import RecordingMocks, plain_strings
from tests.harness.validators import shellcheck_findings, systemd_verify

NAMES = [f"zk-{letter}" for letter in "abcdefgh"]
ADDRESSES = {name: f"10.9.2.{index}" for index, name in enumerate(NAMES, start=1)}
IDS = {name: index for index, name in enumerate(NAMES, start=1)}


def stack_config(servers: list[str], bootstrap: list[str] | None = None, **settings: Any) -> dict[str, Any]:
    nodes = [{"name": name, "address": ADDRESSES[name], "roles": ["zookeeper"]} for name in servers]
    section = {"ids": {name: IDS[name] for name in servers}, **settings}
    if bootstrap is not None:
        section["bootstrap"] = bootstrap
    return {"nodes": nodes, "ssh_private_key": FAKE_PRIVATE_KEY, "zookeeper": section}


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as failure:
        parse_stack_config(raw, {"ssh_private_key"})
    return failure.value.problems


def script(create: str) -> str:
    """The script a `bash -c SCRIPT` (or `sudo -n bash -c SCRIPT`) command line runs."""
    return shlex.split(create)[-1]


def evaluate(config: dict[str, Any]) -> RecordingMocks:
    mocks = RecordingMocks()
    run_program(mocks, config, secret_keys=["ssh_private_key"])
    return mocks


# --- config validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 2, 4, 6, 8])
def test_even_or_too_many_servers_are_rejected_naming_nodes(size: int) -> None:
    raw = stack_config(NAMES[:size])
    raw["nodes"].append({"name": "plain", "address": "10.9.3.1"})
    expected = f"nodes: {size} nodes have role zookeeper; a ZooKeeper ensemble needs an odd number between 1 and 7"
    assert any(p.startswith(expected) for p in problems_of(raw)), problems_of(raw)


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_odd_server_counts_up_to_seven_are_accepted(size: int) -> None:
    config = parse_stack_config(stack_config(NAMES[:size]), {"ssh_private_key"})
    assert config.zookeeper is not None and config.zookeeper.servers == tuple(NAMES[:size])
    assert config.zookeeper.ensemble.ids == {name: IDS[name] for name in NAMES[:size]}


@pytest.mark.parametrize(("settings", "expected"), [
    ({"ids": None}, "zookeeper.ids: is required: give every server a fixed id"),
    ({"ids": {"zk-a": 1, "zk-b": 2}}, "zookeeper.ids: no id for server 'zk-c'"),
    ({"ids": {"zk-a": 1, "zk-b": 2, "zk-c": 2}}, "zookeeper.ids: id 2 is given to zk-b and zk-c; ids are unique"),
    ({"ids": {"zk-a": 1, "zk-b": 2, "zk-c": 256}}, "zookeeper.ids.zk-c: must be an integer between 1 and 255"),
    ({"ids": {"zk-a": 1, "zk-b": 2, "zk-c": "3"}}, "zookeeper.ids.zk-c: must be an integer between 1 and 255"),
    ({"ids": {"zk-a": 1, "zk-b": 2, "zk-c": 3, "zk-z": 4}}, "zookeeper.ids.zk-z: 'zk-z' is not a node with role"),
    ({"ids": [1, 2, 3]}, "zookeeper.ids: must map each server's node name to its id"),
    ({"bootstrap": ["zk-a", "zk-q"]}, "zookeeper.bootstrap[1]: 'zk-q' is not a node with role zookeeper"),
    ({"bootstrap": ["zk-a", "zk-a"]}, "zookeeper.bootstrap: names a server twice"),
    ({"install": "docker"}, "zookeeper.install: must be one of package, tarball, got 'docker'"),
    ({"install": "tarball"}, "zookeeper.tarball: zookeeper.install is tarball"),
    ({"tarball": {"path": "/nonexistent.tgz", "sha256": "x"}}, "zookeeper.tarball.path: no such file"),
    ({"tarball": {"path": "/nonexistent.tgz", "sha256": "x"}}, "zookeeper.tarball.sha256: must be 64"),
    ({"quorum_port": 2181}, "zookeeper: client_port, quorum_port and election_port must differ"),
    ({"client_port": 0}, "zookeeper.client_port: must be a TCP port"),
    ({"four_letter_words": ["ruok"]}, "zookeeper.four_letter_words: must include srvr"),
    ({"four_letter_words": ["srvr", "kill"]}, "zookeeper.four_letter_words[1]: must be one of conf, cons"),
    ({"heap_mb": 16}, "zookeeper.heap_mb: must be at least 64"),
    ({"autopurge": {"snap_retain_count": 1}}, "zookeeper.autopurge.snap_retain_count: must be at least 3"),
    ({"autopurge": {"interval": 1}}, "zookeeper.autopurge.interval: unknown key"),
    ({"tick": 1000}, "zookeeper.tick: unknown key (did you mean 'tick_time'?)"),
    ({"version": "3.8"}, "zookeeper.version: must be a version such as '3.8.4'"),
])
def test_settings_are_validated_naming_the_key(settings: dict[str, Any], expected: str) -> None:
    raw = stack_config(NAMES[:3])
    raw["zookeeper"].update(settings)
    if settings.get("ids", 0) is None:
        del raw["zookeeper"]["ids"]
    found = problems_of(raw)
    assert any(p.startswith(expected) for p in found), found


def test_a_stack_without_zookeeper_nodes_has_no_ensemble() -> None:
    config = parse_stack_config({"nodes": [{"name": "n", "address": "10.9.1.1"}], "ssh_private_key": "k"},
                                {"ssh_private_key"})
    assert config.zookeeper is None


def test_a_section_without_servers_is_a_problem() -> None:
    raw = {"nodes": [{"name": "n", "address": "10.9.1.1"}], "ssh_private_key": "k", "zookeeper": {"ids": {}}}
    assert any(p.startswith("nodes: 0 nodes have role zookeeper") for p in problems_of(raw))


# --- component argument validation ----------------------------------------------------------------------
class FakeHost:
    def __init__(self, name: str) -> None:
        self.hostname, self.address = name, ADDRESSES.get(name, "10.9.9.9")


@pytest.mark.parametrize(("names", "ids", "expected"), [
    ([], {}, "servers: 0 servers; a ZooKeeper ensemble needs an odd number between 1 and 7"),
    (["zk-a", "zk-b"], IDS, "servers: 2 servers"),
    (["zk-a", "zk-a", "zk-b"], IDS, "servers: duplicate server names zk-a"),
    (["zk-a"], {}, "ids: no id for zk-a"),
    (["zk-a", "zk-b", "zk-c"], {"zk-a": 1, "zk-b": 1, "zk-c": 3}, "ids: ids 1 are given to more than one server"),
    (["zk-a"], {"zk-a": 0}, "ids.zk-a: 0 is not between 1 and 255"),
])
def test_component_rejects_bad_servers_and_ids(names: list[str], ids: dict[str, int], expected: str) -> None:
    args = zk.ZooKeeperEnsembleArgs(servers=[FakeHost(n) for n in names], ids=ids)  # type: ignore[misc]
    assert any(p.startswith(expected) for p in zk.validate(args)), zk.validate(args)


# --- the resource graph ---------------------------------------------------------------------------------
def dependencies(mocks: RecordingMocks) -> dict[str, set[str | None]]:
    by_urn = {r.urn: r.name for r in mocks.resources}
    return {r.name: {by_urn.get(d) for d in r.registration.dependencies} for r in mocks.resources}


def test_graph_of_a_three_server_ensemble() -> None:
    mocks = evaluate(stack_config(NAMES[:3]))
    ensemble = mocks.named("zookeeper")
    assert ensemble.type == "cookbook:zookeeper:Ensemble"
    commands = sorted(r.name for r in mocks.of_type("command:remote:Command") if r.name.startswith("zookeeper-"))
    assert commands == ["zookeeper-health"] + [f"zookeeper-{step}-zk-{s}" for step in ("install", "restart", "server")
                                               for s in "abc"]
    for resource in mocks.resources:
        if resource.name.startswith("zookeeper-"):
            assert resource.parent == ensemble.urn, resource.name
    deps = dependencies(mocks)
    for server in NAMES[:3]:
        assert f"{server}-prepare" in deps[f"zookeeper-install-{server}"]  # the prepared host
        assert not any(d and d.startswith("zookeeper-install-") for d in deps[f"zookeeper-install-{server}"])
        assert f"zookeeper-install-{server}" in deps[f"zookeeper-server-{server}"]
    # One server at a time: each first step after the previous one; every second step after all first steps.
    assert "zookeeper-server-zk-a" in deps["zookeeper-server-zk-b"]
    assert "zookeeper-server-zk-b" in deps["zookeeper-server-zk-c"]
    firsts = {f"zookeeper-server-{s}" for s in NAMES[:3]}
    assert firsts <= deps["zookeeper-restart-zk-a"]
    assert "zookeeper-restart-zk-a" in deps["zookeeper-restart-zk-b"]
    assert firsts | {f"zookeeper-restart-{s}" for s in NAMES[:3]} <= deps["zookeeper-health"]
    step = mocks.named("zookeeper-server-zk-b")
    assert step.inputs["connection"]["host"] == ADDRESSES["zk-b"]
    assert "SERVER_ID=2" in step.inputs["create"]
    assert "server.1=10.9.2.1:2888:3888:participant;0.0.0.0:2181" in step.inputs["create"]
    health = mocks.named("zookeeper-health")
    assert health.inputs["connection"]["host"] == ADDRESSES["zk-a"]


def test_the_super_password_travels_only_on_stdin_as_a_secret() -> None:
    mocks = evaluate(stack_config(NAMES[:3]))
    password = mocks.named("zookeeper-super-password")
    assert password.type == "random:index/randomPassword:RandomPassword"
    assert password.inputs["length"] >= 32 and password.inputs["special"] is False
    for name in ("zookeeper-server-zk-a", "zookeeper-server-zk-c"):
        server = mocks.named(name)
        assert server.inputs["stdin"].strip()  # the password, one line
        assert server.inputs["logging"] == "none"
        assert set(server.registration.additional_secret_outputs) >= {"stdout", "stderr"}
        assert "stdin" not in {k for k, v in server.registration.raw_inputs.items() if plain_strings(v)}
        assert server.inputs["stdin"].strip() not in server.inputs["create"]


def test_growth_joins_one_at_a_time_and_leaves_existing_servers_byte_identical() -> None:
    three = evaluate(stack_config(NAMES[:3], bootstrap=NAMES[:3]))
    five = evaluate(stack_config(NAMES[:5], bootstrap=NAMES[:3]))
    before = {r.urn: r.registration.raw_inputs for r in three.resources}
    after = {r.urn: r.registration.raw_inputs for r in five.resources}
    names = {r.urn: r.name for r in five.resources}
    changed = sorted(names[urn] for urn in before if before[urn] != after.get(urn))
    assert changed == ["zookeeper-health"]
    added = sorted(r.name for r in five.resources if r.urn not in before and r.registration.custom)
    assert {"zookeeper-join-zk-d", "zookeeper-join-zk-e", "zookeeper-server-zk-d"} <= set(added)
    deps = dependencies(five)
    assert "zookeeper-join-zk-d" in deps["zookeeper-join-zk-e"]
    assert {"zookeeper-restart-zk-a", "zookeeper-restart-zk-e"} <= deps["zookeeper-join-zk-d"]
    join = five.named("zookeeper-join-zk-d")
    assert join.inputs["connection"]["host"] == ADDRESSES["zk-d"]
    assert "OWN_LINE='server.4=10.9.2.4:2888:3888:participant;0.0.0.0:2181'" in script(join.inputs["create"])
    # Seeds are the bootstrap servers: stable whatever joins later.
    assert "SEED_ENDPOINTS=(10.9.2.1:2181 10.9.2.2:2181 10.9.2.3:2181)" in script(join.inputs["create"])
    assert join.inputs["logging"] == "none" and join.inputs["stdin"].strip()
    assert "MEMBERSHIP_CONTENT=''" in script(five.named("zookeeper-server-zk-d").inputs["create"])  # its join writes it


def test_outputs_wait_for_the_health_gate() -> None:
    exports = run_program(RecordingMocks(), stack_config(NAMES[:3]), secret_keys=["ssh_private_key"])
    assert exports["zookeeper"] == {
        "connect_string": "10.9.2.1:2181,10.9.2.2:2181,10.9.2.3:2181",
        "servers": ["10.9.2.1:2181", "10.9.2.2:2181", "10.9.2.3:2181"],
    }


# --- rendered text --------------------------------------------------------------------------------------
ARGS = zk.ZooKeeperEnsembleArgs(servers=(), ids=IDS, bootstrap=("zk-a", "zk-b", "zk-c"))


@pytest.mark.parametrize("install", zk.INSTALL_MODES)
def test_every_script_passes_shellcheck(install: str) -> None:
    args = zk.ZooKeeperEnsembleArgs(servers=(), ids=IDS, bootstrap=("zk-a",), install=install,
                                    tarball=zk.Tarball("/x.tgz", "0" * 64), removed={"zk-c": ADDRESSES["zk-c"]})
    scripts = {
        "install": zk.render_install_script(args),
        "configure": zk.render_configure_script(args, "zk-a", zk.render_membership(args, ADDRESSES)),
        "configure-joiner": zk.render_configure_script(args, "zk-d", ""),
        "restart": zk.render_restart_script(args, "zk-a"),
        "join": zk.render_join_script(args, "zk-d", ADDRESSES["zk-d"], [ADDRESSES["zk-a"]]),
        "health": zk.render_health_script(args, {"zk-a": ADDRESSES["zk-a"], "zk-b": "fd00::2"}),
        "remove": zk.render_remove_script(args, "zk-c", [ADDRESSES["zk-a"], "fd00::2"]),
        "start-prepare": zk.render_start_prepare(args, "zk-a"),
    }
    for name, script in scripts.items():
        assert shellcheck_findings(script) == "", name
        assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0, name


def test_the_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    unit = zk.render_unit(ARGS, "zk-a")
    assert systemd_verify({"cookbook-zookeeper.service": unit}, tmp_path) == ""
    assert "ExecStartPre=+/bin/bash /usr/local/lib/cookbook-zookeeper/start-prepare" in unit
    assert f"ExecStartPre=+/bin/bash {zk.START_PREPARE_FILE}\n" in unit  # where the server step installs it
    assert f"/etc/systemd/system/{zk.SERVICE}.service" == zk.UNIT_FILE
    assert "@/etc/cookbook-zookeeper/jvm-secret.args" in unit and "superDigest" not in unit
    assert "-cp ${ZOOKEEPER_CLASSPATH} org.apache.zookeeper.server.quorum.QuorumPeerMain " \
        "/var/lib/cookbook-zookeeper/zk-a/conf/zoo.cfg" in unit


def test_static_config_is_sorted_data_with_admin_off_and_a_whitelist() -> None:
    assert zk.render_static_config(ARGS, "zk-a").splitlines() == [
        "4lw.commands.whitelist=mntr,ruok,srvr",
        "admin.enableServer=false",
        "autopurge.purgeInterval=1",
        "autopurge.snapRetainCount=3",
        "dataDir=/var/lib/cookbook-zookeeper/zk-a/data",
        "dataLogDir=/var/lib/cookbook-zookeeper/zk-a/datalog",
        "initLimit=10",
        "reconfigEnabled=true",
        "standaloneEnabled=false",
        "syncLimit=5",
        "tickTime=2000",
    ]


@pytest.mark.parametrize(("install", "expected"), [
    ("package", ["ZOOKEEPER_CLASSPATH=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
                 "ZOOKEEPER_CLI_CLASSPATH=/usr/share/java/zookeeper.jar"]),
    ("tarball", ["ZOOKEEPER_CLASSPATH=/opt/cookbook-zookeeper/apache-zookeeper-3.8.0-bin/lib/*",
                 "ZOOKEEPER_CLI_CLASSPATH=/opt/cookbook-zookeeper/apache-zookeeper-3.8.0-bin/lib/*"]),
])
def test_install_record_names_the_classpath(install: str, expected: list[str]) -> None:
    args = zk.ZooKeeperEnsembleArgs(servers=(), ids=IDS, install=install, tarball=zk.Tarball("/x", "0" * 64))
    assert zk.render_install_env(args).splitlines()[1:] == expected


def test_membership_record_and_connect_string_bracket_ipv6() -> None:
    addresses = {"zk-a": "10.0.0.1", "zk-b": "fd00::2", "zk-c": "zk-c.lan"}
    assert zk.render_membership(ARGS, addresses).splitlines() == [
        "server.1=10.0.0.1:2888:3888:participant;0.0.0.0:2181",
        "server.2=[fd00::2]:2888:3888:participant;0.0.0.0:2181",
        "server.3=zk-c.lan:2888:3888:participant;0.0.0.0:2181",
    ]
    assert zk.connect_string(ARGS, list(addresses.values())) == "10.0.0.1:2181,[fd00::2]:2181,zk-c.lan:2181"


def test_jvm_arguments_size_the_heap_and_name_the_tarball_logging() -> None:
    assert zk.render_jvm_args(ARGS).splitlines() == ["-Xms256m", "-Xmx256m", "-XX:+ExitOnOutOfMemoryError"]
    tarball = zk.ZooKeeperEnsembleArgs(servers=(), ids=IDS, install="tarball", tarball=zk.Tarball("/x", "0" * 64))
    assert zk.render_jvm_args(tarball).splitlines()[-1] == \
        "-Dlogback.configurationFile=/opt/cookbook-zookeeper/apache-zookeeper-3.8.0-bin/conf/logback.xml"


@pytest.mark.parametrize(("stdout", "expected"), [
    ("changed: x\nconfiguration " + "a" * 64 + "\n", "a" * 64),
    ("restart deferred: zk-a leads\nconfiguration " + "b" * 64, "b" * 64),
    ("no configuration line", ""),
    ("", ""),
])
def test_the_second_step_follows_the_reported_configuration(stdout: str, expected: str) -> None:
    assert zk.configuration_of(stdout) == expected


def test_the_digest_is_zookeepers() -> None:
    """The configure script's digest equals ZooKeeper's DigestAuthenticationProvider.generateDigest."""
    script = zk.template("zookeeper/configure.sh")
    function = script[script.index("super_digest() {"):script.index("receive_super_digest() {")]
    done = subprocess.run(["bash", "-c", f"{function}\nsuper_digest 'p4ss w0rd'"], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == base64.b64encode(hashlib.sha1(b"super:p4ss w0rd").digest()).decode()


# --- the node layer's reboot gate -----------------------------------------------------------------------
def test_a_pi_running_a_server_reboots_behind_the_zookeeper_gate_one_at_a_time() -> None:
    config = stack_config(NAMES[:3])
    for node in config["nodes"]:
        node["kind"] = "pi"
    mocks = evaluate(config)
    reboot = script(mocks.named("zk-b-reboot").inputs["create"])
    assert "zookeeper_gate()" in reboot
    assert "ZOOKEEPER_GATE_CONFIG=/var/lib/cookbook-zookeeper/zk-b/conf/zoo.cfg" in reboot.splitlines()
    assert shellcheck_findings(reboot) == ""
    # Servers reboot one at a time (each after the previous one is back and its gates pass).
    assert "zk-a-await-boot" in dependencies(mocks)["zk-b-reboot"]


def test_the_gate_reads_the_live_membership(tmp_path: Path) -> None:
    """The gate against fake servers: every member must serve and one lead (srvr's Mode line)."""
    from components.zookeeper.gate import zookeeper_gate

    gate = zookeeper_gate(ARGS, "zk-a")
    dynamic = tmp_path / "zoo.cfg.dynamic.100000000"
    dynamic.write_text("server.1=127.0.0.1:2888:3888:participant;0.0.0.0:1\n"
                       "server.2=[::1]:2888:3888:participant;0.0.0.0:2")  # no final newline, like ZooKeeper
    (tmp_path / "zoo.cfg").write_text(f"tickTime=2000\ndynamicConfigFile={dynamic}\n")
    modes = {"1": "leader", "2": "follower"}

    def run(modes: dict[str, str]) -> subprocess.CompletedProcess[str]:
        fake = "\n".join(f'    {port}) echo "{mode}" ;;' for port, mode in modes.items())
        text = (f"systemctl() {{ return 0; }}\nzookeeper_gate_mode() {{\n  case $2 in\n{fake}\n  esac\n}}\n")
        body = zk.template("zookeeper/gate.sh")
        body = body[:body.index("zookeeper_gate_mode() {")] + body[body.index("zookeeper_gate() {"):]
        params = {**gate.params, "ZOOKEEPER_GATE_CONFIG": str(tmp_path / "zoo.cfg")}
        header = "\n".join(f"{k}={shlex.quote(str(v))}" for k, v in params.items())
        return subprocess.run(["bash", "-c", f"{header}\n{text}{body}\nzookeeper_gate"], capture_output=True,
                              text=True, check=False)

    healthy = run(modes)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "2 of 2 members serving, 1 leader(s): server.1:leader server.2:follower" in healthy.stdout
    down = run({"1": "leader", "2": ""})
    assert down.returncode == 1 and "server.2:not-serving" in down.stdout
    assert run({"1": "follower", "2": "follower"}).returncode == 1  # no leader: an election is under way


# --- the tarball install, run for real against a release-shaped tarball ----------------------------------
def release(directory: Path, jar: str = "zookeeper-3.8.4.jar") -> tuple[Path, str]:
    top = directory / "apache-zookeeper-3.8.4-bin"
    (top / "lib").mkdir(parents=True)
    (top / "lib" / jar).write_text("jar")
    tarball = directory / "release.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(directory), top.name], check=True)
    return tarball, hashlib.sha256(tarball.read_bytes()).hexdigest()


def install_from_tarball(tarball: Path, sha256: str, install: Path) -> subprocess.CompletedProcess[str]:
    body = zk.template("zookeeper/install.sh")
    function = body[body.index("install_from_tarball() {"):body.index("ensure_zookeeper_user() {")]
    header = "\n".join(f"{k}={shlex.quote(v)}" for k, v in
                       {"TARBALL_PATH": str(tarball), "TARBALL_SHA256": sha256, "INSTALL_DIR": str(install)}.items())
    common = zk.template("shared/common.sh")
    script = f"set -euo pipefail\numask 077\n{header}\n{common}\n{function}\ninstall_from_tarball\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)


def test_the_tarball_is_checked_unpacked_readable_by_the_server_and_kept(tmp_path: Path) -> None:
    tarball, sha256 = release(tmp_path / "release")
    install = tmp_path / "opt" / "apache-zookeeper-3.8.4-bin"
    install.parent.mkdir()
    first = install_from_tarball(tarball, sha256, install)
    assert first.returncode == 0, first.stderr
    assert "changed: installed ZooKeeper from" in first.stdout
    # Readable by the server's user even under a strict umask (mktemp makes its directory private).
    assert oct(install.stat().st_mode & 0o777) == "0o755"
    assert oct((install / "lib" / "zookeeper-3.8.4.jar").stat().st_mode & 0o777) == "0o644"
    assert (install / ".cookbook-sha256").read_text().strip() == sha256
    second = install_from_tarball(tarball, sha256, install)
    assert second.returncode == 0 and second.stdout == ""


def test_a_tarball_with_another_checksum_or_no_zookeeper_jar_is_refused(tmp_path: Path) -> None:
    tarball, _ = release(tmp_path / "release")
    install = tmp_path / "apache-zookeeper-3.8.4-bin"
    wrong = install_from_tarball(tarball, "0" * 64, install)
    assert wrong.returncode == 1 and "does not match zookeeper.tarball.sha256" in wrong.stderr
    other, other_sha = release(tmp_path / "other", jar="something-else.jar")
    refused = install_from_tarball(other, other_sha, install)
    assert refused.returncode == 1 and "not a ZooKeeper binary release" in refused.stderr
    assert not install.exists()


# --- no server step while a ZooKeeper host reboots --------------------------------------------------------
def closure(mocks: RecordingMocks) -> dict[str, set[str]]:
    """Every resource's transitive dependencies, by name: what must be done before it starts."""
    direct = {name: {d for d in deps if d} for name, deps in dependencies(mocks).items()}
    done: dict[str, set[str]] = {}

    def visit(name: str) -> set[str]:
        if name not in done:
            done[name] = set()
            for dependency in direct.get(name, ()):
                done[name] |= {dependency, *visit(dependency)}
        return done[name]

    for name in direct:
        visit(name)
    return done


@pytest.mark.parametrize("shape", ["bring-up", "growth", "replacement"])
def test_no_zookeeper_step_runs_while_a_zookeeper_host_reboots(shape: str) -> None:
    """A run that adds a kernel flag (Pis reboot, one at a time) and changes a setting (servers restart) must not
    restart server 1 while Pi 2 reboots: every server step starts only after every server's host is done."""
    servers, extra = {"bring-up": (NAMES[:3], {}), "growth": (NAMES[:5], {"bootstrap": NAMES[:3]}),
                      "replacement": (NAMES[:4], {"bootstrap": NAMES[:3], "removed": ["zk-c"]})}[shape]
    config = stack_config(servers, **extra)
    for node in config["nodes"]:
        node["kind"] = "pi"
    config["prepare"] = {"pi_cmdline_flags": ["cgroup_enable=cpuset"]}
    mocks = evaluate(config)
    before = closure(mocks)
    hosts = [name for name in servers if name not in extra.get("removed", [])]
    steps = [r.name for r in mocks.of_type("command:remote:Command")
             if r.name.startswith("zookeeper-") and not r.name.startswith("zookeeper-install-")]
    assert len(steps) >= 2 * len(hosts) + 1, steps
    for step in steps:
        for host in hosts:
            assert {f"{host}-reboot", f"{host}-await-boot"} <= before[step], (step, host)
            # ... and never the other way round (no reboot waits for a server step: no cycle, no overlap).
            assert step not in before[f"{host}-reboot"]


# --- removing servers -------------------------------------------------------------------------------------------
def removal_config(servers: list[str], removed: list[str], bootstrap: list[str] | None = None) -> dict[str, Any]:
    """Nodes for `servers` and `removed` (their entries stay), ids for all of them."""
    config = stack_config([*servers, *removed], bootstrap=bootstrap, removed=removed)
    return config


@pytest.mark.parametrize(("change", "expected"), [
    (lambda raw: raw["zookeeper"].update(removed=["zk-z"]),
     "zookeeper.removed[0]: 'zk-z' is not in nodes: keep a removed server's node entry"),
    (lambda raw: raw["zookeeper"]["ids"].pop("zk-c"),
     "zookeeper.ids: no id for removed server 'zk-c': keep its entry"),
    (lambda raw: raw["nodes"][3]["roles"].append("etcd"),  # zk-c
     "zookeeper.removed[0]: zk-c also has role etcd, but nothing runs on a removed server's node"),
    (lambda raw: raw["zookeeper"].update(removed=["zk-c", "zk-d"]),
     "nodes: 2 nodes have role zookeeper (not counting 2 in zookeeper.removed); a ZooKeeper ensemble needs an odd"),
])
def test_removed_servers_are_validated_naming_the_key(change: Any, expected: str) -> None:
    raw = removal_config(["zk-a", "zk-b", "zk-d"], ["zk-c"], bootstrap=NAMES[:3])
    change(raw)
    found = problems_of(raw)
    assert any(p.startswith(expected) for p in found), found


def test_a_removed_bootstrap_server_stays_in_the_record_and_gets_no_host() -> None:
    config = parse_stack_config(removal_config(["zk-a", "zk-b", "zk-d"], ["zk-c"], bootstrap=NAMES[:3]),
                                {"ssh_private_key"})
    assert config.zookeeper is not None
    assert config.zookeeper.servers == ("zk-a", "zk-b", "zk-d")
    assert config.zookeeper.removed == {"zk-c": ADDRESSES["zk-c"]}
    assert config.zookeeper.ensemble.ids["zk-c"] == 3


def test_a_server_in_etcd_removed_is_refused() -> None:
    raw = stack_config(NAMES[:3])
    for node in raw["nodes"]:
        node["roles"] = ["zookeeper", "etcd"]
    raw["etcd"] = {"removed": ["zk-c"]}
    assert "nodes[2].roles: zk-c is in etcd.removed (nothing runs on it), so it cannot have role zookeeper; give " \
        "the role to a node that runs" in problems_of(raw)


@pytest.mark.parametrize(("removed", "servers", "bootstrap", "expected"), [
    ({"zk-a": "10.9.2.1"}, ["zk-a", "zk-b", "zk-c"], (), "removed: zk-a cannot be both removed and a server"),
    ({"zk-q": "10.9.9.1"}, ["zk-a"], (), "ids: no id for removed zk-q"),
    ({}, ["zk-a"], ("zk-a", "zk-c"), "bootstrap[1]: 'zk-c' is neither a server nor in removed"),
])
def test_component_rejects_bad_removals(removed: dict[str, str], servers: list[str], bootstrap: tuple[str, ...],
                                        expected: str) -> None:
    args = zk.ZooKeeperEnsembleArgs(servers=[FakeHost(n) for n in servers], ids=IDS,  # type: ignore[misc]
                                    bootstrap=bootstrap, removed=removed)
    assert any(p.startswith(expected) for p in zk.validate(args)), zk.validate(args)
    fine = zk.ZooKeeperEnsembleArgs(servers=[FakeHost(n) for n in ("zk-a", "zk-b", "zk-d")],  # type: ignore[misc]
                                    ids=IDS, bootstrap=("zk-a", "zk-b", "zk-c"), removed={"zk-c": "10.9.2.3"})
    assert zk.validate(fine) == []


def test_shrinking_5_to_3_removes_one_at_a_time_through_a_server_and_leaves_the_others_byte_identical() -> None:
    five = evaluate(stack_config(NAMES[:5], bootstrap=NAMES[:3]))
    three = evaluate(removal_config(["zk-a", "zk-b", "zk-d"], ["zk-c", "zk-e"], bootstrap=NAMES[:3]))
    names = {r.name for r in three.resources}
    # Nothing runs on a removed server's node: no host, no step.
    assert not {n for n in names if n.startswith(("zk-c-", "zk-e-")) or n.endswith(("-zk-c", "-zk-e"))} - {
        "zookeeper-remove-zk-c", "zookeeper-remove-zk-e"}
    before = {r.urn: r.registration.raw_inputs for r in five.resources}
    changed = sorted(r.name for r in three.resources if r.urn in before and before[r.urn] != r.registration.raw_inputs)
    # The servers that stay keep their inputs (the bootstrap record still names zk-c at its address); the join of
    # zk-d reaches the ensemble through the servers before it that remain.
    assert changed == ["zookeeper-health", "zookeeper-join-zk-d"]
    deps = dependencies(three)
    steps = {f"zookeeper-{step}-{s}" for step in ("server", "restart") for s in ("zk-a", "zk-b", "zk-d")}
    assert steps <= deps["zookeeper-remove-zk-c"]
    assert "zookeeper-remove-zk-c" in deps["zookeeper-remove-zk-e"]  # one membership change at a time
    assert {"zookeeper-remove-zk-c", "zookeeper-remove-zk-e"} <= deps["zookeeper-join-zk-d"]
    assert {"zookeeper-remove-zk-e", "zookeeper-join-zk-d"} <= deps["zookeeper-health"]
    removal = three.named("zookeeper-remove-zk-c")
    assert removal.inputs["connection"]["host"] == ADDRESSES["zk-a"]
    text = script(removal.inputs["create"])
    assert "TARGET_ID=3" in text.splitlines()
    assert "SERVER_ENDPOINTS=(10.9.2.1:2181 10.9.2.2:2181 10.9.2.4:2181)" in text.splitlines()
    assert removal.inputs["logging"] == "none" and removal.inputs["stdin"].strip()
    assert removal.inputs["stdin"].strip() not in removal.inputs["create"]
    assert set(removal.registration.additional_secret_outputs) >= {"stdout", "stderr"}
    assert "stdin" not in {k for k, v in removal.registration.raw_inputs.items() if plain_strings(v)}
    health = script(three.named("zookeeper-health").inputs["create"])
    assert "MEMBERSHIP_CONFIG=/var/lib/cookbook-zookeeper/zk-a/conf/zoo.cfg" in health.splitlines()
    assert "SERVER_ENDPOINTS=(10.9.2.1:2181 10.9.2.2:2181 10.9.2.4:2181)" in health.splitlines()
    exports = run_program(RecordingMocks(), removal_config(["zk-a", "zk-b", "zk-d"], ["zk-c", "zk-e"],
                                                           bootstrap=NAMES[:3]), secret_keys=["ssh_private_key"])
    assert exports["zookeeper"]["connect_string"] == "10.9.2.1:2181,10.9.2.2:2181,10.9.2.4:2181"


def test_replacing_a_dead_server_removes_it_before_the_replacement_joins() -> None:
    mocks = evaluate(removal_config(["zk-a", "zk-b", "zk-f"], ["zk-c"], bootstrap=NAMES[:3]))
    deps = dependencies(mocks)
    assert "zookeeper-remove-zk-c" in deps["zookeeper-join-zk-f"]
    join = script(mocks.named("zookeeper-join-zk-f").inputs["create"])
    assert "SEED_ENDPOINTS=(10.9.2.1:2181 10.9.2.2:2181)" in join.splitlines()  # not the removed zk-c
    assert "OWN_LINE='server.6=10.9.2.6:2888:3888:participant;0.0.0.0:2181'" in join.splitlines()
    # The servers that stay still carry the record with zk-c in it (read only before their first start).
    assert "server.3=10.9.2.3:2888:3888:participant;0.0.0.0:2181" in \
        mocks.named("zookeeper-server-zk-a").inputs["create"]

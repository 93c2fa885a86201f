"""The ZooKeeper steps' shell scripts, run for real against fakes of `systemctl`, ZooKeeper's four-letter words and
its command line client (`ZooKeeperMain`), `install -o` and `chown`.

The scripts are the ones the component renders, with its paths pointed into a scratch directory. The fakes answer
like ZooKeeper 3.8 and systemd do (`srvr`'s Mode line, `mntr`'s synced follower counts, `config`'s membership
lines, `reconfig`'s "Committed new configuration", `NeedDaemonReload`), from one JSON state file, and log every
call. Each test pins one decision a step takes from the host's and the ensemble's state.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.zookeeper import ensemble as zk
from tests.unit.script_fakes import FakeCommands

PASSWORD = "s3cretPassw0rdForTheSuperUser123"
IDS = {"zk-a": 1, "zk-b": 2, "zk-c": 3, "zk-d": 4, "zk-e": 5}
ADDRESSES = {name: f"10.9.4.{index}" for name, index in IDS.items()}


def line(name: str) -> str:
    return f"server.{IDS[name]}={ADDRESSES[name]}:2888:3888:participant;0.0.0.0:2181"


def endpoint(name: str) -> str:
    return f"{ADDRESSES[name]}:2181"


# `timeout SECONDS COMMAND...`: the scripts reach ZooKeeper only through it (four_letter's `bash -c` over
# /dev/tcp, and the Java command line client), so this fake answers for ZooKeeper; anything else it runs.
FAKE_TIMEOUT = r'''
import json, os, sys
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
command = sys.argv[2:]

def log(text):
    with open(os.environ["FAKE_CALLS"], "a") as calls:
        calls.write(text + "\n")

def save():
    json.dump(state, open(state_path, "w"))

if command[:2] == ["bash", "-c"]:  # four_letter: bash -c SCRIPT NAME HOST PORT WORD
    host, port, word = command[4:7]
    server = state["servers"].get(f"{host}:{port}", {})
    mode = server.get("mode", "")
    if not server.get("running", bool(mode)):
        sys.exit(1)  # connection refused
    if word == "srvr":
        print("Zookeeper version: 3.8.0-5a02a05eddb59aee6ac762f7ea82e92a68eb9c0f, built on 2022-02-25 08:49 UTC")
        print("Mode: " + mode if mode else "This ZooKeeper instance is not currently serving requests")
    elif word == "mntr" and mode:
        print("zk_version\t3.8.0\nzk_server_state\t" + mode)
        if mode == "leader":  # synced followers: every forwarding follower, the non-voting ones included
            voting, other = server.get("synced_voting_followers", 0), server.get("synced_non_voting_followers", 0)
            print("zk_synced_followers\t%d" % (voting + other))
            print("zk_synced_non_voting_followers\t%d" % other)
    sys.exit(0)
if command and command[0] == "/usr/bin/java":  # ZooKeeperMain -server HOST:PORT, commands on stdin
    target = command[command.index("-server") + 1]
    stdin = sys.stdin.read().splitlines()
    log("zkcli " + " ".join(command) + " <<< " + " | ".join(stdin))
    if not state["servers"].get(target, {}).get("mode"):
        sys.exit(1)  # the client never connects; its error goes to stderr
    authenticated = False
    for entry in stdin:
        words = entry.split()
        if words == ["config"]:
            print("\n".join(state["membership"]) + "\nversion=100000004")
        elif words[:2] == ["addauth", "digest"]:
            authenticated = words[2] == "super:" + state["password"]
        elif words[:1] == ["reconfig"]:
            if not authenticated:
                print("Insufficient permission : /zookeeper/config")
            elif state.get("reconfig_in_progress", 0) > 0:
                state["reconfig_in_progress"] -= 1
                print("KeeperErrorCode = ReconfigInProgress")
            elif words[1] == "-remove":
                gone = {"server." + i + "=" for i in words[2].split(",")}
                state["membership"] = [m for m in state["membership"] if not m.startswith(tuple(gone))]
                print("Committed new configuration:\n" + "\n".join(state["membership"]))
            elif words[1] == "-add":
                state["membership"] = sorted({*state["membership"], words[2]})
                print("Committed new configuration:\n" + "\n".join(state["membership"]))
            save()
    sys.exit(0)
os.execvp(command[0], command)
'''

FAKE_SYSTEMCTL = r'''
import hashlib, json, os, signal, sys
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
args = [a for a in sys.argv[1:] if a not in ("--quiet", "--no-block")]
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write("systemctl " + " ".join(args) + "\n")
unit = state["unit"]
unit_file = os.environ["FAKE_UNIT_FILE"]

def on_disk():
    return hashlib.sha256(open(unit_file, "rb").read()).hexdigest() if os.path.exists(unit_file) else None

def save():
    json.dump(state, open(state_path, "w"))

verb = args[0]
if verb == "show":  # show -p NeedDaemonReload --value UNIT: a loaded unit whose file changed since
    print("yes" if unit["loaded"] is not None and unit["loaded"] != on_disk() else "no")
elif verb == "daemon-reload":
    if state.get("kill_at_daemon_reload"):
        state["kill_at_daemon_reload"] = False
        save()
        os.kill(os.getppid(), signal.SIGKILL)  # the run is cut off here
        sys.exit(1)
    unit["loaded"] = on_disk()
elif verb == "is-active":
    sys.exit(0 if unit["active"] else 3)
elif verb == "is-enabled":
    sys.exit(0 if unit["enabled"] else 1)
elif verb == "enable":
    unit["enabled"] = True
elif verb in ("start", "restart"):
    if unit["loaded"] is None:
        unit["loaded"] = on_disk()  # systemd loads a unit it never saw on demand
    prepare = os.environ["FAKE_START_PREPARE"]
    if os.path.exists(prepare) and os.spawnvp(os.P_WAIT, "bash", ["bash", prepare]) != 0:
        sys.exit(1)  # the unit's ExecStartPre failed
    unit["active"] = True
    unit["started_with_unit"] = unit["loaded"]
    for address in state.get("serve_on_start", []):
        state["servers"][address] = {"mode": "follower"}
elif verb == "reset-failed":
    pass
else:
    sys.exit(2)
save()
'''

# `install -o USER -g GROUP ...` and `chown` need the zookeeper user, which this machine does not have.
FAKE_INSTALL = """#!/bin/bash
args=()
while [ $# -gt 0 ]; do
  case $1 in -o | -g) shift 2 ;; *) args+=("$1"); shift ;; esac
done
exec /usr/bin/install "${args[@]}"
"""


class Fakes(FakeCommands):
    """Fake timeout (four-letter words), systemctl and install sharing one state; scripts read the password on
    stdin."""

    def run(self, script: str, stdin: str | None = PASSWORD + "\n",
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return super().run(script, stdin, timeout)


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    """Fakes on PATH, and the component's host paths under tmp_path (the renderers read them when called)."""
    for constant, path in (("CONFIG_DIR", "etc/cookbook-zookeeper"), ("DATA_ROOT", "var/lib/cookbook-zookeeper"),
                           ("UNIT_FILE", "etc/systemd/system/cookbook-zookeeper.service"),
                           ("START_PREPARE_FILE", "usr/local/lib/cookbook-zookeeper/start-prepare")):
        monkeypatch.setattr(zk, constant, str(tmp_path / path))
    fakes = Fakes(tmp_path, {"FAKE_UNIT_FILE": zk.UNIT_FILE, "FAKE_START_PREPARE": zk.START_PREPARE_FILE})
    for name, text in (("timeout", f"#!{sys.executable}\n{FAKE_TIMEOUT}"),
                       ("systemctl", f"#!{sys.executable}\n{FAKE_SYSTEMCTL}"),
                       ("install", FAKE_INSTALL), ("chown", "#!/bin/sh\nexit 0\n")):
        fakes.add(name, text)
    Path(zk.CONFIG_DIR).mkdir(parents=True)
    Path(zk.CONFIG_DIR, "install.env").write_text("ZOOKEEPER_CLI_CLASSPATH=/usr/share/java/zookeeper.jar\n")
    for name in ("zoo.cfg", "jvm.args", "jvm-secret.args"):  # what start-prepare hashes (the server step writes them)
        Path(zk.CONFIG_DIR, name).write_text("tickTime=2000\n" if name == "zoo.cfg" else "-Xmx64m\n")
    Path(zk.UNIT_FILE).parent.mkdir(parents=True)
    Path(zk.UNIT_FILE).write_text("[Service]\nExecStart=/bin/true\n")
    fakes.state_path.write_text(json.dumps({
        "password": PASSWORD, "membership": [], "servers": {},
        "unit": {"active": False, "enabled": False, "loaded": None},
    }))
    yield fakes


ARGS = zk.ZooKeeperEnsembleArgs(servers=(), ids=IDS, bootstrap=("zk-a", "zk-b", "zk-c"), health_timeout=3)


def ensemble(fakes: Fakes, members: list[str], serving: dict[str, str]) -> None:
    fakes.set_state(membership=sorted(line(name) for name in members),
                    servers={endpoint(name): {"mode": mode} for name, mode in serving.items()})


# --- configure: daemon-reload from systemd's view ------------------------------------------------------------
def test_a_run_killed_between_writing_the_unit_and_the_reload_reloads_next_time(fakes: Fakes) -> None:
    """The unit is loaded with older content (say a new version changed it); the run writes the new unit and is
    killed at daemon-reload. The next run writes nothing (the file is already current), yet must reload: systemd
    still runs the old definition (NeedDaemonReload=yes) and would start the server with it."""
    unit_file = Path(zk.UNIT_FILE)
    old = hashlib.sha256(unit_file.read_bytes()).hexdigest()
    fakes.set_state(unit={"active": False, "enabled": True, "loaded": old}, kill_at_daemon_reload=True)
    script = zk.render_configure_script(ARGS, "zk-a", zk.render_membership(ARGS, ADDRESSES))

    killed = fakes.run(script)
    assert killed.returncode == -9, killed.stderr
    assert unit_file.read_text() == zk.render_unit(ARGS, "zk-a") + "\n"
    assert fakes.state()["unit"]["loaded"] == old  # systemd never saw the new unit

    rerun = fakes.run(script)
    assert rerun.returncode == 0, rerun.stderr
    assert f"wrote {zk.UNIT_FILE}" not in rerun.stdout  # nothing to write this time...
    calls = [call for call in fakes.calls() if call.startswith("systemctl ")]
    second = calls[calls.index("systemctl daemon-reload") + 1:]
    assert "systemctl daemon-reload" in second  # ...but systemd is told
    assert second.index("systemctl daemon-reload") < second.index("systemctl start cookbook-zookeeper")
    unit = fakes.state()["unit"]
    assert unit["started_with_unit"] == unit["loaded"] == hashlib.sha256(unit_file.read_bytes()).hexdigest()
    # A third run has nothing to do.
    third = fakes.run(script)
    assert third.returncode == 0 and "changed:" not in third.stdout, third.stdout
    assert fakes.calls().count("systemctl daemon-reload") == 2


# --- remove ----------------------------------------------------------------------------------------------------
def remove(fakes: Fakes, target: str, servers: list[str]) -> subprocess.CompletedProcess[str]:
    return fakes.run(zk.render_remove_script(ARGS, target, [ADDRESSES[name] for name in servers]))


def cli_calls(fakes: Fakes) -> list[str]:
    return [call for call in fakes.calls() if call.startswith("zkcli ")]


def test_a_removal_runs_reconfig_remove_as_the_super_user_through_a_serving_server(fakes: Fakes) -> None:
    ensemble(fakes, ["zk-a", "zk-b", "zk-c"], {"zk-b": "leader", "zk-c": "follower"})  # zk-a is down
    done = remove(fakes, "zk-a", ["zk-b", "zk-c"])
    assert done.returncode == 0, done.stderr
    assert "changed: removed zk-a (server.1) from the ensemble" in done.stdout
    assert fakes.state()["membership"] == [line("zk-b"), line("zk-c")]
    reconfig = [call for call in cli_calls(fakes) if "reconfig" in call]
    assert len(reconfig) == 1 and f"-server {endpoint('zk-b')} <<< addauth digest super:{PASSWORD} | " \
        "reconfig -remove 1 | quit" in reconfig[0]
    # The password travels on the client's stdin, never on a command line.
    assert all(PASSWORD not in call.split(" <<< ")[0] for call in fakes.calls())


def test_removing_a_server_that_is_gone_already_succeeds_without_a_reconfiguration(fakes: Fakes) -> None:
    ensemble(fakes, ["zk-b", "zk-c", "zk-d"], {"zk-b": "follower", "zk-c": "leader", "zk-d": "follower"})
    done = remove(fakes, "zk-a", ["zk-b", "zk-c", "zk-d"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == "zk-a (server.1) is not a member of the ensemble (already removed)\n"
    assert not any("reconfig" in call or "addauth" in call for call in cli_calls(fakes))


@pytest.mark.parametrize(("members", "target", "serving", "refused"), [
    # 3 voters, one other down: the two that remain would need both.
    (["zk-a", "zk-b", "zk-c"], "zk-c", {"zk-a": "leader", "zk-c": "follower"}, True),
    # The dead one of 3: the two that remain serve.
    (["zk-a", "zk-b", "zk-c"], "zk-c", {"zk-a": "leader", "zk-b": "follower"}, False),
    # 5 voters, the target and one other down: 3 of the 4 that remain serve.
    (["zk-a", "zk-b", "zk-c", "zk-d", "zk-e"], "zk-e", {"zk-a": "leader", "zk-b": "follower", "zk-c": "follower"},
     False),
    # 5 voters, two others down: 2 of the 4 that remain serve, a quorum of 4 needs 3.
    (["zk-a", "zk-b", "zk-c", "zk-d", "zk-e"], "zk-e",
     {"zk-a": "leader", "zk-b": "follower", "zk-e": "follower"}, True),
    # The last voter is never removed.
    (["zk-a"], "zk-a", {"zk-a": "leader"}, True),
])
def test_a_removal_is_refused_when_the_servers_that_remain_could_not_hold_a_quorum(
        fakes: Fakes, members: list[str], target: str, serving: dict[str, str], refused: bool) -> None:
    ensemble(fakes, members, serving)
    current = [name for name in members if name != target]
    done = remove(fakes, target, current or list(serving))
    if refused:
        assert done.returncode == 1, done.stdout
        assert f"error: refusing to remove {target} (server.{IDS[target]})" in done.stderr
        down = [f"server.{IDS[name]}" for name in current if name not in serving]
        assert all(label in done.stderr for label in down), done.stderr
        assert any(line(target) == m for m in fakes.state()["membership"])
        assert not any("reconfig" in call for call in cli_calls(fakes))
    else:
        assert done.returncode == 0, done.stderr
        assert line(target) not in fakes.state()["membership"]


def test_a_removal_retries_while_another_reconfiguration_is_in_progress(fakes: Fakes) -> None:
    ensemble(fakes, ["zk-a", "zk-b", "zk-c", "zk-d", "zk-e"],
             {"zk-a": "leader", "zk-b": "follower", "zk-c": "follower", "zk-d": "follower", "zk-e": "follower"})
    fakes.set_state(reconfig_in_progress=1)
    done = remove(fakes, "zk-e", ["zk-a", "zk-b", "zk-c"])
    assert done.returncode == 0, done.stderr
    assert len([call for call in cli_calls(fakes) if "reconfig -remove 5" in call]) == 2
    assert fakes.state()["membership"] == [line(name) for name in ("zk-a", "zk-b", "zk-c", "zk-d")]


def test_a_removal_without_the_password_on_stdin_changes_nothing(fakes: Fakes) -> None:
    ensemble(fakes, ["zk-a", "zk-b", "zk-c"], {"zk-a": "leader", "zk-b": "follower", "zk-c": "follower"})
    done = fakes.run(zk.render_remove_script(ARGS, "zk-c", [ADDRESSES["zk-a"]]), stdin="")
    assert done.returncode == 1 and "expected the super user password on stdin" in done.stderr
    assert cli_calls(fakes) == []


# --- health ----------------------------------------------------------------------------------------------------
def runtime_membership(server: str, members: list[str]) -> None:
    """The membership file ZooKeeper keeps for `server` (no final newline, as ZooKeeper writes it), and the
    runtime zoo.cfg that names it."""
    runtime = Path(zk.runtime_dir(server))
    runtime.mkdir(parents=True, exist_ok=True)
    dynamic = runtime / "zoo.cfg.dynamic.100000004"
    dynamic.write_text("\n".join([*sorted(line(name) for name in members), "version=100000004"]))
    (runtime / "zoo.cfg").write_text(f"tickTime=2000\ndynamicConfigFile={dynamic}\n")


def health(fakes: Fakes, servers: list[str]) -> subprocess.CompletedProcess[str]:
    return fakes.run(zk.render_health_script(ARGS, {name: ADDRESSES[name] for name in servers}), stdin="")


def test_the_health_gate_passes_with_a_removed_server_still_running_as_a_non_voting_follower(fakes: Fakes) -> None:
    """After 5 -> 3 the removed servers keep running (ZooKeeper does not stop them) as non-voting followers until
    someone stops them: the gate counts voters, and the membership must be exactly the servers."""
    ensemble(fakes, ["zk-a", "zk-b", "zk-d"], {"zk-a": "leader", "zk-b": "follower", "zk-d": "follower",
                                               "zk-c": "follower", "zk-e": "follower"})
    fakes.set_state(servers={**fakes.state()["servers"],
                             endpoint("zk-a"): {"mode": "leader", "synced_voting_followers": 2,
                                                "synced_non_voting_followers": 2}})
    runtime_membership("zk-a", ["zk-a", "zk-b", "zk-d"])
    healthy = health(fakes, ["zk-a", "zk-b", "zk-d"])
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout == "healthy: 3 servers, leader zk-a\n"


def test_the_health_gate_fails_while_a_removed_server_still_votes(fakes: Fakes) -> None:
    ensemble(fakes, ["zk-a", "zk-b", "zk-c", "zk-d"], {"zk-a": "leader", "zk-b": "follower", "zk-d": "follower"})
    fakes.set_state(servers={**fakes.state()["servers"],
                             endpoint("zk-a"): {"mode": "leader", "synced_voting_followers": 2}})
    runtime_membership("zk-a", ["zk-a", "zk-b", "zk-c", "zk-d"])
    failed = health(fakes, ["zk-a", "zk-b", "zk-d"])
    assert failed.returncode == 1
    assert "the membership" in failed.stderr and "is not: server.1=" in failed.stderr


def test_the_health_gate_fails_while_a_server_has_not_joined_as_a_voter(fakes: Fakes) -> None:
    ensemble(fakes, ["zk-a", "zk-b", "zk-c"], {"zk-a": "leader", "zk-b": "follower", "zk-c": "follower",
                                               "zk-d": "follower"})
    fakes.set_state(servers={**fakes.state()["servers"],
                             endpoint("zk-a"): {"mode": "leader", "synced_voting_followers": 2,
                                                "synced_non_voting_followers": 1}})
    runtime_membership("zk-a", ["zk-a", "zk-b", "zk-c"])
    assert health(fakes, ["zk-a", "zk-b", "zk-c", "zk-d"]).returncode == 1


def test_the_health_gate_fails_with_two_leaders(fakes: Fakes) -> None:
    """A split brain: two servers each say they lead, each counting the others as synced followers."""
    ensemble(fakes, ["zk-a", "zk-b", "zk-c"], {"zk-a": "leader", "zk-b": "leader", "zk-c": "follower"})
    fakes.set_state(servers={endpoint(name): {"mode": mode, "synced_voting_followers": 2}
                             for name, mode in (("zk-a", "leader"), ("zk-b", "leader"))}
                    | {endpoint("zk-c"): {"mode": "follower"}})
    runtime_membership("zk-a", ["zk-a", "zk-b", "zk-c"])
    assert health(fakes, ["zk-a", "zk-b", "zk-c"]).returncode == 1
    fakes.set_state(servers={**fakes.state()["servers"], endpoint("zk-b"): {"mode": "follower"}})
    assert health(fakes, ["zk-a", "zk-b", "zk-c"]).returncode == 0  # one leader: the same ensemble passes


# --- a joiner restarted before it became a voter ------------------------------------------------------------------
def test_a_joiner_that_adopted_the_committed_membership_starts_from_its_record_again(fakes: Fakes) -> None:
    """A joiner adopts the committed membership (without itself) once it synced; restarted before `reconfig -add`
    it could not start from it (ZooKeeper's reconfiguration guide). Its join step rewrites its record and
    start-prepare uses the record while the newest membership lacks the server."""
    ensemble(fakes, ["zk-a", "zk-b", "zk-c"], {"zk-a": "leader", "zk-b": "follower", "zk-c": "follower"})
    runtime_membership("zk-d", ["zk-a", "zk-b", "zk-c"])  # what it adopted before the run was cut off
    record = Path(zk.CONFIG_DIR, "membership-zk-d.dynamic")
    fakes.set_state(serve_on_start=["127.0.0.1:2181"], unit={"active": False, "enabled": True, "loaded": "x"})

    joined = fakes.run(zk.render_join_script(ARGS, "zk-d", ADDRESSES["zk-d"],
                                             [ADDRESSES[name] for name in ("zk-a", "zk-b", "zk-c")]))
    assert joined.returncode == 0, joined.stderr
    assert record.read_text() == "\n".join([line("zk-a"), line("zk-b"), line("zk-c"), line("zk-d")]) + "\n"
    assert "systemctl reset-failed cookbook-zookeeper" in fakes.calls()
    assert line("zk-d") in fakes.state()["membership"]
    assert "changed: added zk-d to the ensemble" in joined.stdout

    prepared = fakes.run(zk.render_start_prepare(ARGS, "zk-d"), stdin="")
    assert prepared.returncode == 0, prepared.stderr
    runtime = Path(zk.runtime_dir("zk-d"), "zoo.cfg").read_text()
    assert runtime.splitlines() == ["tickTime=2000", f"dynamicConfigFile={record}"]


def test_start_prepare_keeps_the_newest_membership_when_it_lists_the_server(fakes: Fakes) -> None:
    runtime_membership("zk-a", ["zk-a", "zk-b", "zk-c"])
    Path(zk.CONFIG_DIR, "membership-zk-a.dynamic").write_text(line("zk-a") + "\n")
    prepared = fakes.run(zk.render_start_prepare(ARGS, "zk-a"), stdin="")
    assert prepared.returncode == 0, prepared.stderr
    runtime = Path(zk.runtime_dir("zk-a"), "zoo.cfg").read_text()
    assert runtime.endswith(f"dynamicConfigFile={zk.runtime_dir('zk-a')}/zoo.cfg.dynamic.100000004\n")


def test_a_running_server_without_a_runtime_config_is_restarted_not_aborted(fakes: Fakes) -> None:
    """The server runs (started some other way) without the runtime zoo.cfg start-prepare writes: the step
    restarts it with its configuration instead of dying in read_peers under pipefail."""
    fakes.set_state(unit={"active": True, "enabled": True, "loaded": None}, serve_on_start=["127.0.0.1:2181"])
    done = fakes.run(zk.render_configure_script(ARGS, "zk-a", zk.render_membership(ARGS, ADDRESSES)))
    assert done.returncode == 0, done.stderr
    assert "changed: restarted cookbook-zookeeper" in done.stdout
    assert Path(zk.runtime_dir("zk-a"), "zoo.cfg").exists()

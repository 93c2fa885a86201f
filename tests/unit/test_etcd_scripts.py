"""The etcd steps' shell scripts, run for real against fakes of `etcdctl`, `systemctl`, `apt-get` and `etcd`.

The fakes answer like etcd 3.4-3.6 and systemd do (member list's simple format, the errors `member promote`
returns, `endpoint status -w json`, an unstarted learner without name), from one JSON state file they
share, and log every call. Each test pins one decision the steps must take from the cluster's and the
host's state, so a one-line mutation of that decision fails here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.etcd import cluster as etcd
from components.etcd import render
from components.shared.scripts import render_script
from tests.unit.script_fakes import FakeCommands

ARGS = etcd.EtcdClusterArgs(members=[], bootstrap=["a", "b", "c"], snapshot_retention=2)

FAKE_ETCDCTL = r'''
import json, os, sys
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write("etcdctl " + " ".join(a for a in args if not a.startswith(("--cacert", "--cert", "--key",
              "--dial-timeout", "--command-timeout"))) + "\n")
endpoints = next((a.split("=", 1)[1] for a in args if a.startswith("--endpoints=")), "")
words = [a for a in args if not a.startswith("-")]
members = state["members"]

def save():
    json.dump(state, open(state_path, "w"))

def healthy(endpoint):
    if endpoint in state.get("down", []):
        return False
    for m in members:
        if endpoint in m["client"].split(",") and m["learner"]:
            return False  # a learner refuses the health check's linearizable read
    return True

def fail(message, code=1):
    print("Error: " + message, file=sys.stderr)
    sys.exit(code)

if words[:2] == ["member", "list"]:
    if not any(healthy(e) for e in endpoints.split(",")):
        fail("context deadline exceeded")
    for m in members:
        print(", ".join([m["id"], "started" if m["name"] else "unstarted", m["name"], m["peer"], m["client"],
                         "true" if m["learner"] else "false"]))
elif words[:2] == ["endpoint", "health"]:
    targets = [u for m in members for u in m["client"].split(",") if u] if "--cluster" in args \
        else endpoints.split(",")
    sys.exit(0 if all(healthy(e) for e in targets) else 1)
elif words[:2] == ["endpoint", "status"]:
    status = state["status"]
    print('[{"Endpoint":"%s","Status":{"header":{"cluster_id":14841639068965178418,"member_id":%s,'
          '"revision":12,"raft_term":3},"version":"3.6.0","dbSize":%d,"leader":%s,"raftIndex":40,'
          '"raftTerm":3,"raftAppliedIndex":40,"dbSizeInUse":%d,"storageVersion":"3.6.0"}}]'
          % (endpoints, status["member_id"], status["db_size"], status["leader"], status["db_size"]))
elif words[:2] == ["snapshot", "save"]:
    open(words[2], "w").write("snapshot\n")
    print("Snapshot saved at " + words[2])
elif words[:2] == ["member", "add"]:
    if state.get("add_failures", 0) > 0:
        state["add_failures"] -= 1
        save()
        fail("etcdserver: unhealthy cluster")
    peer = next(a.split("=", 1)[1] for a in args if a.startswith("--peer-urls="))
    new = {"id": "%016x" % (0xd00 + len(members)), "name": "", "peer": peer, "client": "", "learner": True}
    members.append(new)
    save()
    print("Member %s added to cluster 1\n" % new["id"])
    initial = ",".join((m["name"] or words[2]) + "=" + m["peer"] for m in members)
    print('ETCD_NAME="%s"\nETCD_INITIAL_CLUSTER="%s"\nETCD_INITIAL_CLUSTER_STATE="existing"' % (words[2], initial))
elif words[:2] == ["member", "promote"]:
    member = next(m for m in members if m["id"] == words[2])
    if state.get("promoted_elsewhere"):
        member["learner"] = False  # another run got there first
        state["promoted_elsewhere"] = False
        save()
    if not member["learner"]:
        fail("etcdserver: can only promote a learner member")
    if state.get("promote_not_ready", 0) > 0:
        state["promote_not_ready"] -= 1
        save()
        fail("etcdserver: can only promote a learner member which is in sync with leader")
    member["learner"] = False
    save()
    print("Member %s promoted in cluster 1" % words[2])
elif words[:2] == ["member", "remove"]:
    state["members"] = [m for m in members if m["id"] != words[2]]
    save()
    print("Member %s removed from cluster 1" % words[2])
elif words[0] == "move-leader":
    print("Leadership transferred from a to %s" % words[1])
else:
    sys.exit(2)
'''

FAKE_SYSTEMCTL = r'''
import json, os, sys
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
quiet = "--quiet" in sys.argv
args = [a for a in sys.argv[1:] if a not in ("--quiet", "--no-block")]
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write("systemctl " + " ".join(args) + "\n")
units = state.setdefault("units", {})

def unit(name):
    return units.setdefault(name.removesuffix(".service"), {"enabled": False, "active": False, "masked": False})

def save():
    json.dump(state, open(state_path, "w"))

verb, names = args[0], args[1:]
if verb == "is-enabled":
    u = unit(names[0])
    if not quiet:
        print("masked" if u["masked"] else "enabled" if u["enabled"] else "disabled")
    sys.exit(0 if u["enabled"] and not u["masked"] else 1)
elif verb == "is-active":
    sys.exit(0 if unit(names[0])["active"] else 3)
elif verb == "enable":
    unit(names[0])["enabled"] = True
elif verb in ("start", "restart"):
    if state.get("start_fails"):
        print("Job for %s failed." % names[0], file=sys.stderr)
        sys.exit(1)
    u = unit(names[0])
    if u["masked"]:
        print("Failed to start %s: Unit is masked." % names[0], file=sys.stderr)
        sys.exit(1)
    u["active"] = True
    written = state.get("on_restart")
    if verb == "restart" and written:  # the new process records what it starts with (the unit's ExecStartPre)
        open(written["path"], "w").write(written["content"])
    starts = state.get("starts_member")
    if starts and names[0] == starts["unit"]:  # the learner's etcd connects and publishes its name
        for m in state["members"]:
            if m["peer"] == starts["peer"]:
                m["name"], m["client"] = starts["name"], starts["client"]
elif verb == "stop":
    unit(names[0])["active"] = False
elif verb == "mask":
    unit(names[0])["masked"] = True
elif verb == "show":
    print("no")
save()
'''

FAKE_APT = r'''
import json, os, sys
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
name = os.path.basename(sys.argv[0])
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write(name + " " + " ".join(sys.argv[1:]) + "\n")
installed = state.setdefault("installed", [])
if name == "dpkg-query":
    if sys.argv[-1] not in installed:
        sys.exit(1)  # dpkg-query: no packages found matching ...
    print("installed", end="")
elif name == "apt-get" and "install" in sys.argv:
    packages = [a for a in sys.argv[1:] if not a.startswith("-") and a != "install"]
    units = state.setdefault("units", {})
    etcd = units.get("etcd", {"enabled": False, "active": False, "masked": False})
    if "etcd-server" in packages:
        # like Debian's postinst: enable the unit and start it (deb-systemd-invoke), unless it is masked
        etcd["enabled"] = True
        etcd["active"] = not etcd["masked"]
        state.setdefault("distribution_service_started", etcd["active"])
    units["etcd"] = etcd
    installed.extend(packages)
json.dump(state, open(state_path, "w"))
'''


class Fakes(FakeCommands):
    """Fake etcdctl, systemctl and apt sharing one state; `run` executes a rendered script with them."""


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    fakes = Fakes(tmp_path)
    for name, source in (("etcdctl", FAKE_ETCDCTL), ("systemctl", FAKE_SYSTEMCTL), ("apt-get", FAKE_APT),
                         ("dpkg-query", FAKE_APT)):
        fakes.add(name, f"#!{sys.executable}\n{source}")
    fakes.state_path.write_text(json.dumps({"members": [], "status": {"member_id": "1", "leader": "1",
                                                                       "db_size": 4096}}))
    return fakes


def member(index: int, name: str, learner: bool = False, started: bool = True) -> dict[str, Any]:
    address = f"10.9.0.{index}"
    return {"id": f"{index:016x}", "name": name if started else "", "peer": f"https://{address}:2380",
            "client": f"https://{address}:2379" if started else "", "learner": learner}


def common_params(fakes: Fakes) -> dict[str, Any]:
    return {"PKI_DIR": str(fakes.root / "pki"), "ETCDCTL_BIN": str(fakes.bin / "etcdctl"),
            "SNAPSHOT_DIR": str(fakes.root / "snapshots"), "SNAPSHOT_RETENTION": 2}


# --- join ----------------------------------------------------------------------------------------------
def join_script(fakes: Fakes, timeout: int = 20) -> str:
    return render_script(["shared/common.sh", "shared/files.sh", "etcd/common.sh", "etcd/join.sh"], {
        **common_params(fakes), "MEMBER_NAME": "d", "PEER_URL": "https://10.9.0.4:2380",
        "SEED_ENDPOINTS": "https://10.9.0.1:2379,https://10.9.0.2:2379,https://10.9.0.3:2379",
        "CONFIG_DIR": str(fakes.root / "config"), "DATA_DIR": str(fakes.root / "data/d"),
        "SERVICE": "cookbook-etcd", "SNAPSHOT_UNIT": "cookbook-etcd-snapshot",
        "LOCAL_CLIENT_URL": "https://10.9.0.4:2379", "TIMEOUT": timeout})


def three_members(fakes: Fakes, **state: Any) -> None:
    fakes.set_state(members=[member(1, "a"), member(2, "b"), member(3, "c")],
                    starts_member={"unit": "cookbook-etcd", "peer": "https://10.9.0.4:2380", "name": "d",
                                   "client": "https://10.9.0.4:2379"}, **state)


def etcdctl_calls(fakes: Fakes) -> list[str]:
    return [call.split(" ", 1)[1] for call in fakes.calls() if call.startswith("etcdctl ")]


def test_a_join_adds_a_learner_after_a_snapshot_then_starts_and_promotes_it(fakes: Fakes) -> None:
    three_members(fakes, promote_not_ready=2)
    done = fakes.run(join_script(fakes))
    assert done.returncode == 0, done.stderr
    calls = etcdctl_calls(fakes)
    snapshot = next(i for i, c in enumerate(calls) if "snapshot save" in c)
    added = next(i for i, c in enumerate(calls) if c.startswith(("--endpoints", "member add")) and "member add" in c)
    assert snapshot < added
    assert sum("member promote" in c for c in calls) == 3  # "not in sync" twice is retried
    assert "changed: promoted d to a voting member" in done.stdout
    membership = (fakes.root / "config/membership-d.env").read_text()
    assert "ETCD_INITIAL_CLUSTER_STATE=existing" in membership and "d=https://10.9.0.4:2380" in membership
    assert (fakes.root / "config/joined-d").exists()
    assert fakes.state()["units"]["cookbook-etcd-snapshot.timer"]["enabled"]  # only now that d has joined


def test_a_join_of_an_already_voting_member_succeeds_without_touching_the_cluster(fakes: Fakes) -> None:
    """The second run after a growth: d is a started voting member. No gate before its own entry, no
    snapshot, no add, no promote: success."""
    three_members(fakes)
    fakes.set_state(members=[*fakes.state()["members"], member(4, "d")],
                    units={"cookbook-etcd": {"enabled": True, "active": True, "masked": False}})
    (fakes.root / "config").mkdir()
    (fakes.root / "config/membership-d.env").write_text("ETCD_INITIAL_CLUSTER=x\n")
    done = fakes.run(join_script(fakes))
    assert done.returncode == 0, done.stderr
    calls = etcdctl_calls(fakes)
    assert not [c for c in calls if any(verb in c for verb in ("member add", "member promote", "snapshot save",
                                                                "member remove"))], calls
    assert "d was already a voting member" in done.stdout


def test_a_join_treats_etcds_already_promoted_answer_as_success(fakes: Fakes) -> None:
    """The member list still says learner, but `member promote` answers "can only promote a learner member"
    (promoted meanwhile): that is success, not something to retry until the timeout."""
    three_members(fakes, promoted_elsewhere=True)
    done = fakes.run(join_script(fakes, timeout=3))
    assert done.returncode == 0, done.stderr
    assert sum("member promote" in c for c in etcdctl_calls(fakes)) == 1
    assert "already a voting member (promoted by an earlier run)" in done.stdout


def test_a_learner_not_in_sync_is_retried_until_the_timeout(fakes: Fakes) -> None:
    three_members(fakes, promote_not_ready=1000)
    done = fakes.run(join_script(fakes, timeout=2))
    assert done.returncode != 0
    assert "timed out after 2s waiting for d to catch up and be promoted" in done.stderr
    # It had started (it has a name): the learner stays, and the next run resumes it.
    assert [m["name"] for m in fakes.state()["members"]] == ["a", "b", "c", "d"]


def test_a_join_resumes_a_started_learner_without_the_pre_add_gate(fakes: Fakes) -> None:
    """A join that timed out after its learner started: the re-run goes straight to the promotion. The gate
    before adding (which a learner in the cluster would fail) is not run again."""
    three_members(fakes)
    fakes.set_state(members=[*fakes.state()["members"], member(4, "d", learner=True)],
                    units={"cookbook-etcd": {"enabled": True, "active": True, "masked": False}})
    (fakes.root / "config").mkdir()
    (fakes.root / "config/membership-d.env").write_text("ETCD_INITIAL_CLUSTER=x\n")
    done = fakes.run(join_script(fakes))
    assert done.returncode == 0, done.stderr
    calls = etcdctl_calls(fakes)
    first_promote = next(i for i, c in enumerate(calls) if "member promote" in c)
    assert not any("endpoint health" in c for c in calls[:first_promote]), calls
    assert not any("member add" in c or "snapshot save" in c for c in calls)


def test_a_join_that_fails_before_its_learner_started_removes_the_learner(fakes: Fakes) -> None:
    three_members(fakes, start_fails=True)
    done = fakes.run(join_script(fakes))
    assert done.returncode != 0
    assert [m["name"] for m in fakes.state()["members"]] == ["a", "b", "c"]  # no leftover learner
    assert "removed the learner of d again" in done.stderr
    assert not (fakes.root / "config/membership-d.env").exists()
    assert not fakes.state()["units"].get("cookbook-etcd-snapshot.timer", {}).get("enabled")
    # The next run adds it anew and succeeds.
    fakes.set_state(start_fails=False)
    again = fakes.run(join_script(fakes))
    assert again.returncode == 0, again.stderr
    assert [m["name"] for m in fakes.state()["members"]] == ["a", "b", "c", "d"]


def test_a_join_adopts_its_unstarted_learner_left_by_a_killed_run(fakes: Fakes) -> None:
    """A run killed after `member add` (no trap runs): the next run finds its entry by peer URL (no name
    yet), rebuilds the membership file from the member list, starts and promotes it."""
    three_members(fakes)
    fakes.set_state(members=[*fakes.state()["members"], member(4, "d", learner=True, started=False)])
    done = fakes.run(join_script(fakes))
    assert done.returncode == 0, done.stderr
    assert not any("member add" in c for c in etcdctl_calls(fakes))
    membership = (fakes.root / "config/membership-d.env").read_text()
    assert "d=https://10.9.0.4:2380" in membership and "a=https://10.9.0.1:2380" in membership


# --- the health gates ------------------------------------------------------------------------------------
def run_function(fakes: Fakes, fragments: list[str], params: dict[str, Any], call: str,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return fakes.run(render_script(fragments, {**common_params(fakes), **params}) + call + "\n", timeout=timeout)


@pytest.mark.parametrize(("members", "down", "healthy"), [
    ([member(1, "a"), member(2, "b"), member(3, "c")], [], True),
    # A learner refuses the health check's read: it is not asked, it does not count.
    ([member(1, "a"), member(2, "b"), member(3, "c"), member(4, "d", learner=True)], [], True),
    ([member(1, "a"), member(2, "b"), member(3, "c")], ["https://10.9.0.2:2379"], False),
    # A voting member that never started has no client URL: unhealthy.
    ([member(1, "a"), member(2, "b"), member(3, "c", started=False)], [], False),
])
def test_voting_members_healthy_counts_voting_members_only(fakes: Fakes, members: list[dict[str, Any]],
                                                          down: list[str], healthy: bool) -> None:
    fakes.set_state(members=members, down=down)
    done = run_function(fakes, ["shared/common.sh", "etcd/common.sh"], {},
                        'voting_members_healthy "https://10.9.0.1:2379"')
    assert (done.returncode == 0) is healthy, done.stderr


def health_gate(fakes: Fakes, expected: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return run_function(fakes, ["shared/common.sh", "etcd/common.sh", "etcd/health.sh"],
                        {"ENDPOINTS": "https://10.9.0.1:2379,https://10.9.0.2:2379,https://10.9.0.3:2379",
                         "EXPECTED_MEMBERS": expected, "TIMEOUT": 1}, "")


@pytest.mark.parametrize(("members", "down", "passes"), [
    ([member(1, "a"), member(2, "b"), member(3, "c")], [], True),
    ([member(1, "a"), member(2, "b")], [], False),  # one missing
    ([member(1, "a"), member(2, "b"), member(3, "c"), member(4, "d")], [], False),  # one too many
    ([member(1, "a"), member(2, "b"), member(3, "c"), member(4, "d", learner=True)], [], False),  # a learner left
    ([member(1, "a"), member(2, "b"), member(3, "c"), member(4, "", learner=True, started=False)], [], False),
    ([member(1, "a"), member(2, "b"), member(4, "x")], [], False),  # the right count, a wrong name
    ([member(1, "a"), member(2, "b"), member(3, "c")], ["https://10.9.0.3:2379"], False),  # one unhealthy
])
def test_the_health_gate_requires_exactly_the_expected_healthy_voting_members(
        fakes: Fakes, members: list[dict[str, Any]], down: list[str], passes: bool) -> None:
    fakes.set_state(members=members, down=down)
    done = health_gate(fakes, ("a", "b", "c"))
    assert (done.returncode == 0) is passes, (done.stdout, done.stderr)
    if passes:
        assert done.stdout == "healthy: 3 voting members: a b c\n"
    else:
        assert "timed out after 1s waiting for the etcd cluster to be healthy" in done.stderr


# --- restarts: leader hand-off and the quorum gate -------------------------------------------------------
def restart_function(fakes: Fakes, call: str) -> subprocess.CompletedProcess[str]:
    return run_function(fakes, ["shared/common.sh", "etcd/common.sh", "etcd/restart.sh"],
                        {"MEMBER_NAME": "a", "SERVICE": "cookbook-etcd", "LOCAL_CLIENT_URL": "https://10.9.0.1:2379",
                         "STARTED_RECORD": str(fakes.root / "started")}, call)


# Member IDs as etcd makes them: uint64, most above 2^63 (no shell or awk arithmetic may touch them).
BIG_ID = "17237436991929493444"


@pytest.mark.parametrize(("leader", "moves"), [(BIG_ID, True), ("9372538179322589801", False)])
def test_a_leading_member_hands_leadership_to_a_healthy_voter_using_json_status(
        fakes: Fakes, leader: str, moves: bool) -> None:
    fakes.set_state(members=[member(1, "a"), member(2, "b", started=False), member(3, "c"),
                             member(4, "d", learner=True)],
                    status={"member_id": BIG_ID, "leader": leader, "db_size": 4096})
    done = restart_function(fakes, "hand_off_leadership")
    assert done.returncode == 0, done.stderr
    moved = [c for c in etcdctl_calls(fakes) if "move-leader" in c]
    if moves:  # not itself, not the unstarted voter, not the learner
        assert moved == [f"--endpoints=https://10.9.0.1:2379 move-leader {3:016x}"]
        assert f"changed: leadership moved to {3:016x}" in done.stdout
    else:
        assert moved == []


@pytest.mark.parametrize(("size", "down", "allowed"), [
    (1, [], True),
    (3, [], True),
    (3, ["c"], False),         # restarting a would leave b alone
    (5, ["e"], True),          # b, c, d hold 3 of 5
    (5, ["e", "d"], False),
])
def test_a_restart_waits_until_the_other_members_hold_a_quorum(fakes: Fakes, size: int, down: list[str],
                                                               allowed: bool) -> None:
    names = "abcde"[:size]
    fakes.set_state(members=[member(i, n) for i, n in enumerate(names, 1)],
                    down=[f"https://10.9.0.{names.index(n) + 1}:2379" for n in down])
    done = restart_function(fakes, "quorum_without_me")
    assert (done.returncode == 0) is allowed


# --- removal -----------------------------------------------------------------------------------------------
def remove_script(fakes: Fakes, target: str, target_address: str, reused: bool = False) -> str:
    script = render.render_remove_script(ARGS, target, target_address, reused)
    return script.replace(f"ETCDCTL_BIN={render.PACKAGE_BINARIES[1]}", f"ETCDCTL_BIN={fakes.bin}/etcdctl").replace(
        f"SNAPSHOT_DIR={ARGS.snapshot_dir}", f"SNAPSHOT_DIR={fakes.root}/snapshots").replace(
        f"PKI_DIR={render.PKI_DIR}", f"PKI_DIR={fakes.root}/pki")


@pytest.mark.parametrize(("size", "down", "allowed"), [
    (3, ["c"], True),             # 2 of 2 remaining healthy, quorum 2
    (3, ["c", "b"], False),       # 1 of 2 remaining healthy
    (5, ["e", "d"], True),        # 3 of 4 remaining healthy, quorum 3
    (5, ["e", "d", "b"], False),  # 2 of 4 remaining healthy
])
def test_removal_refuses_when_the_remaining_members_would_lose_quorum(fakes: Fakes, size: int, down: list[str],
                                                                     allowed: bool) -> None:
    names = "abcde"[:size]
    fakes.set_state(members=[member(i, n) for i, n in enumerate(names, 1)],
                    down=[f"https://10.9.0.{names.index(n) + 1}:2379" for n in down],
                    status={"member_id": "1", "leader": "1", "db_size": 4096})
    target = down[0]
    done = fakes.run(remove_script(fakes, target, f"10.9.0.{names.index(target) + 1}"))
    removed = f"member remove {names.index(target) + 1:016x}" in "\n".join(etcdctl_calls(fakes))
    assert removed is allowed, (done.stdout, done.stderr)
    if allowed:
        assert done.returncode == 0 and f"changed: removed member {target}" in done.stdout
        calls = "\n".join(etcdctl_calls(fakes))
        assert "snapshot save" in calls.split("member remove")[0]  # a snapshot first
    else:
        assert done.returncode == 1 and f"refusing to remove {target}" in done.stderr


def test_removal_of_an_absent_member_changes_nothing(fakes: Fakes) -> None:
    fakes.set_state(members=[member(1, "a"), member(2, "b"), member(4, "d")])
    done = fakes.run(remove_script(fakes, "c", "10.9.0.3"))
    assert done.returncode == 0 and "c is not a member (already removed)" in done.stdout
    calls = "\n".join(etcdctl_calls(fakes))
    assert "member remove" not in calls and "snapshot" not in calls


def test_removal_finds_a_never_started_learner_by_its_peer_url(fakes: Fakes) -> None:
    """A learner added but never started has no name. A learner does not vote: the quorum stays 2 of 3."""
    fakes.set_state(members=[member(1, "a"), member(2, "b"), member(3, "c"),
                             member(5, "e", learner=True, started=False)])
    done = fakes.run(remove_script(fakes, "e", "10.9.0.5"))
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in fakes.state()["members"]] == ["a", "b", "c"]
    assert "changed: removed member e" in done.stdout


def test_removal_leaves_an_unstarted_learner_of_a_replacement_at_the_same_address(fakes: Fakes) -> None:
    """c is removed and its replacement f, at c's address, was added but never started: that entry is f's."""
    fakes.set_state(members=[member(1, "a"), member(2, "b"), member(3, "f", learner=True, started=False)])
    done = fakes.run(remove_script(fakes, "c", "10.9.0.3", reused=True))
    assert done.returncode == 0 and "c is not a member (already removed)" in done.stdout
    assert len(fakes.state()["members"]) == 3


# --- snapshots -------------------------------------------------------------------------------------------
def snapshot_function(fakes: Fakes, call: str) -> subprocess.CompletedProcess[str]:
    return run_function(fakes, ["shared/common.sh", "etcd/common.sh"], {}, call)


def test_a_snapshot_is_refused_when_the_disk_cannot_hold_it(fakes: Fakes) -> None:
    fakes.set_state(status={"member_id": "1", "leader": "1", "db_size": 1 << 60})
    done = snapshot_function(fakes, 'take_snapshot https://10.9.0.1:2379 before-add-d')
    assert done.returncode == 1
    assert f"not enough free space for a snapshot in {fakes.root}/snapshots" in done.stderr
    assert not any("snapshot save" in c for c in etcdctl_calls(fakes))


def test_snapshots_prune_old_ones_of_each_kind_and_partial_files(fakes: Fakes) -> None:
    directory = fakes.root / "snapshots"
    directory.mkdir()
    old = ["a-20240101T000000Z.db", "a-20240102T000000Z.db", "a-20240103T000000Z.db",
           "before-add-d-20240101T000000Z.db", "before-remove-c-20240102T000000Z.db",
           "before-add-e-20240103T000000Z.db", "a-20240104T000000Z.db.part", "unrelated.txt"]
    for age, name in enumerate(old):
        (directory / name).write_text("x")
        os.utime(directory / name, (1_700_000_000 + age, 1_700_000_000 + age))
    done = snapshot_function(fakes, 'take_snapshot https://10.9.0.1:2379 a')
    assert done.returncode == 0, done.stderr
    left = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    periodic = [name for name in left if name.startswith("a-")]
    assert len(periodic) == 2 and "a-20240103T000000Z.db" in periodic  # the newest old one and the new one
    assert [name for name in left if name.startswith("before-")] == [
        "before-add-e-20240103T000000Z.db", "before-remove-c-20240102T000000Z.db"]
    assert not [name for name in left if name.endswith(".part")]
    assert "unrelated.txt" in left


# --- install: the distribution's service, the architecture check, the tarball ------------------------------
def install_function(fakes: Fakes, call: str, **params: Any) -> subprocess.CompletedProcess[str]:
    return run_function(fakes, ["shared/common.sh", "shared/files.sh", "etcd/common.sh", "etcd/install.sh"], {
        "INSTALL_MODE": "package", "ETCD_VERSION": "", "ETCD_BIN": str(fakes.root / "bin-etcd/etcd"),
        "GO_ARCH": "arm64", "TARBALL_PATH": "", "TARBALL_SHA256": "", "ENV_CONTENT": "ETCD_NAME=a", **params,
    }, call)


def test_the_distribution_service_is_masked_before_the_package_can_start_it(fakes: Fakes) -> None:
    done = install_function(fakes, 'keep_distribution_service_masked; apt_install etcd-server etcd-client')
    assert done.returncode == 0, done.stderr
    calls = fakes.calls()
    mask = calls.index("systemctl mask etcd.service")
    install = next(i for i, c in enumerate(calls) if c.startswith("apt-get") and " install " in c)
    assert mask < install
    assert fakes.state()["distribution_service_started"] is False
    # Unmasked later (by hand, or a package upgrade): the next run stops and masks it again.
    fakes.set_state(units={"etcd": {"enabled": True, "active": True, "masked": False}})
    again = install_function(fakes, "keep_distribution_service_masked")
    assert "changed: stopped the distribution's etcd.service" in again.stdout
    assert fakes.state()["units"]["etcd"] == {"enabled": True, "active": False, "masked": True}
    quiet = install_function(fakes, "keep_distribution_service_masked")
    assert quiet.stdout == ""


FAKE_ETCD = """#!/bin/sh
# etcd {version} on {arch}: refuses to run, --version included, unless told the architecture is fine.
if [ "{needs}" = yes ] && [ "$ETCD_UNSUPPORTED_ARCH" != {arch} ]; then
  echo "etcd on unsupported platform without ETCD_UNSUPPORTED_ARCH={arch} set"; exit 1
fi
echo "etcd Version: {version}"
sleep 0.2  # etcd prints each line with its own write: a reader that stopped early kills it with SIGPIPE
echo "Git SHA: 0"
echo "Go Version: go1.19"
"""


def fake_etcd(directory: Path, version: str, needs_variable: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "etcd").write_text(FAKE_ETCD.format(version=version, arch="arm64",
                                                     needs="yes" if needs_variable else "no"))
    (directory / "etcd").chmod(0o755)


@pytest.mark.parametrize(("version", "needs_variable"), [("3.4.23", True), ("3.5.17", False)])
def test_the_env_file_says_unsupported_arch_only_when_the_binary_needs_it(fakes: Fakes, version: str,
                                                                          needs_variable: bool) -> None:
    fake_etcd(fakes.root / "bin-etcd", version, needs_variable)
    done = install_function(fakes, "etcd_env")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ETCD_NAME=a\n" + ("ETCD_UNSUPPORTED_ARCH=arm64\n" if needs_variable else "")


def release_tarball(directory: Path, version: str, needs_variable: bool) -> tuple[Path, str]:
    """A tarball shaped like an etcd release (etcd-vX-linux-arm64/etcd, etcdctl); returns it and its sha256."""
    release = directory / "release" / f"etcd-v{version}-linux-arm64"
    fake_etcd(release, version, needs_variable)
    (release / "etcdctl").write_text("#!/bin/sh\necho 'etcdctl version: x'\n")
    (release / "etcdctl").chmod(0o755)
    (release / "README.md").write_text("docs\n")
    tarball = directory / f"etcd-v{version}.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(directory / "release"), release.name], check=True)
    return tarball, hashlib.sha256(tarball.read_bytes()).hexdigest()


def tarball_install(fakes: Fakes, tarball: Path, sha256: str, version: str) -> subprocess.CompletedProcess[str]:
    return install_function(fakes, "install_from_tarball", INSTALL_MODE="tarball", ETCD_VERSION=version,
                            ETCDCTL_BIN=str(fakes.root / "bin-etcd/etcdctl"), TARBALL_PATH=str(tarball),
                            TARBALL_SHA256=sha256)


@pytest.mark.parametrize(("version", "needs_variable"), [("3.4.23", True), ("3.5.17", False)])
def test_tarball_install_verifies_the_checksum_and_is_idempotent(fakes: Fakes, version: str,
                                                                 needs_variable: bool) -> None:
    """3.4 on arm64 answers --version only with ETCD_UNSUPPORTED_ARCH: without it in the probe, the binaries
    would be reinstalled on every run."""
    tarball, sha256 = release_tarball(fakes.root, version, needs_variable)
    wrong = tarball_install(fakes, tarball, "0" * 64, version)
    assert wrong.returncode == 1 and "does not match etcd.tarballs sha256" in wrong.stderr
    assert not (fakes.root / "bin-etcd/etcd").exists()
    first = tarball_install(fakes, tarball, sha256, version)
    assert first.returncode == 0, first.stderr
    assert f"changed: installed etcd {version}" in first.stdout
    assert (fakes.root / "bin-etcd/etcdctl").exists() and not (fakes.root / "bin-etcd/README.md").exists()
    again = tarball_install(fakes, tarball, sha256, version)
    assert again.returncode == 0 and again.stdout == ""


def test_tarball_install_refuses_a_tarball_of_another_version(fakes: Fakes) -> None:
    tarball, sha256 = release_tarball(fakes.root, "3.5.16", False)
    done = tarball_install(fakes, tarball, sha256, "3.5.17")
    assert done.returncode == 1 and "does not report version 3.5.17 (etcd.version)" in done.stderr


def test_install_file_never_runs_in_a_pipeline_subshell() -> None:
    """`... | install_file` would set FILE_CHANGED in a subshell (the rolling-restart test caught exactly that)."""
    for template in sorted((Path(etcd.__file__).parent / "templates").glob("*.sh")):
        assert not re.search(r"\|\s*(\\\n\s*)?install_file", template.read_text()), template.name


def test_a_package_install_masks_the_distribution_service_before_apt_runs(fakes: Fakes) -> None:
    (fakes.bin / "getent").write_text("#!/bin/sh\nexit 0\n")  # the etcd user and group exist
    (fakes.bin / "getent").chmod(0o755)
    done = install_function(fakes, "install_etcd", ETCD_BIN=str(fakes.bin / "etcdctl"),
                            ETCDCTL_BIN=str(fakes.bin / "etcdctl"))
    assert done.returncode == 0, done.stderr
    assert fakes.state()["distribution_service_started"] is False
    assert "installed etcd-server etcd-client" in done.stdout


# --- the member step's restart decision ---------------------------------------------------------------
MAIN_STEPS = "install_etcd\nreceive_pki\nwrite_config\nkeep_distribution_service_masked\nmanage_services\n"


def manage_services(fakes: Fakes, started: str, current: str) -> subprocess.CompletedProcess[str]:
    """The member step's last part on a running member that started with files hashing to `started`, now
    `current` on disk. The fake restart makes the new process record what it starts with."""
    config = fakes.root / "config"
    config.mkdir(exist_ok=True)
    (config / "membership-a.env").write_text("ETCD_INITIAL_CLUSTER=a=https://10.9.0.1:2380\n")
    record = fakes.root / "started-a"
    record.write_text(started + "\n")
    hash_script = fakes.root / "config-hash"
    hash_script.write_text(f"echo {current}\n")
    fakes.set_state(members=[member(1, "a"), member(2, "b"), member(3, "c")],
                    units={"cookbook-etcd": {"enabled": True, "active": True, "masked": False},
                           "cookbook-etcd-snapshot.timer": {"enabled": True, "active": True, "masked": False}},
                    on_restart={"path": str(record), "content": current + "\n"})
    script = render.render_configure_script(ARGS, "a", "10.9.0.1", "amd64", "ETCD_INITIAL_CLUSTER=a=x")
    assert script.endswith(MAIN_STEPS)
    script = script.removesuffix(MAIN_STEPS) + "manage_services\n"
    for name, value in (("ETCDCTL_BIN", str(fakes.bin / "etcdctl")), ("CONFIG_DIR", str(config)),
                        ("CONFIG_HASH_PATH", str(hash_script)), ("STARTED_RECORD", str(record)),
                        ("HEALTH_TIMEOUT", "5"), ("PKI_DIR", str(fakes.root / "pki"))):
        script = re.sub(rf"^{name}=.*$", f"{name}={value}", script, count=1, flags=re.M)
    return fakes.run(script)


def test_a_member_restarts_when_its_files_differ_from_those_it_started_with(fakes: Fakes) -> None:
    """Whoever wrote the files (this run, or an interrupted one): the host's record decides."""
    done = manage_services(fakes, started="1" * 64, current="2" * 64)
    assert done.returncode == 0, done.stderr
    assert "systemctl restart cookbook-etcd" in fakes.calls()
    assert f"changed: restarted cookbook-etcd: its files changed since it started ({'1' * 12} -> {'2' * 12})" \
        in done.stdout


def test_a_member_running_with_its_current_files_is_left_alone(fakes: Fakes) -> None:
    done = manage_services(fakes, started="2" * 64, current="2" * 64)
    assert done.returncode == 0, done.stderr
    assert not [call for call in fakes.calls() if " restart " in f" {call} " or " stop " in f" {call} "]
    assert done.stdout == ""


# --- certificates reach the member in one switch ------------------------------------------------------
def pem(kind: str, body: str) -> str:
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by the etcd user: needs root, as on a host")
def test_certificates_switch_in_one_rename_and_a_rerun_changes_nothing(fakes: Fakes) -> None:
    pki = fakes.root / "config/pki"
    pki.parent.mkdir()
    pki.mkdir()  # a plain directory, as an earlier version left it
    (pki / "member.crt").write_text("old\n")
    script = render.render_configure_script(ARGS, "a", "10.9.0.1", "amd64", "")
    script = re.sub(r"^PKI_DIR=.*$", f"PKI_DIR={pki}", script.removesuffix(MAIN_STEPS), count=1, flags=re.M)

    # Once the live path is a link, it must exist at every moment (a member (re)starting then reads it): every
    # rename is checked to happen while it exists.
    live_path_watched = ('mv() { [ -e "$PKI_DIR" ] || { echo "$PKI_DIR was missing before: mv $*" >&2; return 9; }; '
                         'command mv "$@"; }\n')

    def receive(cert: str, stdin: str | None = None, watch: bool = False) -> subprocess.CompletedProcess[str]:
        if stdin is None:
            stdin = pem("CERTIFICATE", cert) + pem("EC PRIVATE KEY", cert + "-key") + pem("CERTIFICATE", "ca-1") + \
                pem("CERTIFICATE", "ca-2")
        env = {"PATH": "/usr/bin:/bin"}
        steps = script + (live_path_watched if watch else "") + "receive_pki\n"
        return subprocess.run(["bash", "-c", steps], input=stdin, capture_output=True, text=True, env=env,
                              check=False)

    first = receive("one")
    assert first.returncode == 0, first.stderr
    assert pki.is_symlink() and "changed: certificates switched to" in first.stdout
    assert (pki / "member.crt").read_text() == pem("CERTIFICATE", "one")
    assert (pki / "ca.crt").read_text() == pem("CERTIFICATE", "ca-1") + pem("CERTIFICATE", "ca-2")
    assert oct((pki / "member.key").stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in pki.parent.iterdir()) == ["pki", os.readlink(pki)]  # the old directory is gone
    again = receive("one")
    assert again.returncode == 0 and again.stdout == ""
    renewed = receive("two", watch=True)
    assert renewed.returncode == 0, renewed.stderr
    assert "changed: certificates switched to" in renewed.stdout
    assert (pki / "member.key").read_text() == pem("EC PRIVATE KEY", "two-key")
    assert sorted(p.name for p in pki.parent.iterdir()) == ["pki", os.readlink(pki)]
    refused = receive("", stdin=pem("EC PRIVATE KEY", "k") + pem("CERTIFICATE", "c") + pem("CERTIFICATE", "ca"))
    assert refused.returncode == 1 and "expected on stdin a certificate, its key" in refused.stderr


# --- download mode ----------------------------------------------------------------------------------------
@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server over a directory laid out like etcd's release downloads (v<version>/...)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "releases"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def publish(root: Path, version: str, content: bytes, sums: str | None = None) -> str:
    """A release directory with an amd64 tarball and its SHA256SUMS; returns the tarball's sha256."""
    directory = root / f"v{version}"
    directory.mkdir(exist_ok=True)
    name = f"etcd-v{version}-linux-amd64.tar.gz"
    (directory / name).write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    (directory / "SHA256SUMS").write_text(sums if sums is not None else
                                         f"{'0' * 64}  etcd-v{version}-linux-arm64.tar.gz\n{digest}  {name}\n")
    return digest


def download_script(fakes: Fakes, url: str, version: str = "3.5.17") -> str:
    args = etcd.EtcdClusterArgs(members=[], install="download", version=version, download_url=url)
    script = render.render_download_script(args, "amd64")
    remote = render.tarball_remote_path(args, "amd64")
    return script.replace(f"TARBALL_PATH={remote}", f"TARBALL_PATH={fakes.root / 'var/tmp' / remote.split('/')[-1]}")


def test_a_download_is_checked_against_the_release_sums_and_done_once(fakes: Fakes,
                                                                      release_server: tuple[str, Path]) -> None:
    url, root = release_server
    digest = publish(root, "3.5.17", b"the release tarball")
    first = fakes.run(download_script(fakes, url))
    assert first.returncode == 0, first.stderr
    assert "changed: downloaded etcd-v3.5.17-linux-amd64.tar.gz" in first.stdout
    assert render.downloaded_sha256(first.stdout) == digest
    saved = fakes.root / "var/tmp/cookbook-etcd-v3.5.17-linux-amd64.tar.gz"
    assert saved.read_bytes() == b"the release tarball"
    (root / "v3.5.17" / "etcd-v3.5.17-linux-amd64.tar.gz").unlink()  # a re-run needs only the sums
    again = fakes.run(download_script(fakes, url))
    assert again.returncode == 0, again.stderr
    assert "changed:" not in again.stdout and render.downloaded_sha256(again.stdout) == digest


def test_a_tarball_that_does_not_match_the_sums_is_refused_and_not_kept(fakes: Fakes,
                                                                        release_server: tuple[str, Path]) -> None:
    url, root = release_server
    publish(root, "3.5.17", b"the release tarball", sums=f"{'1' * 64}  etcd-v3.5.17-linux-amd64.tar.gz\n")
    done = fakes.run(download_script(fakes, url))
    assert done.returncode == 1
    assert "does not match its sha256" in done.stderr and render.DOWNLOADED_MARKER not in done.stdout
    assert not list((fakes.root / "var/tmp").iterdir())  # no tarball, no staging file


def test_a_release_without_this_architecture_names_it(fakes: Fakes, release_server: tuple[str, Path]) -> None:
    url, root = release_server
    publish(root, "3.5.17", b"x", sums=f"{'0' * 64}  etcd-v3.5.17-linux-arm64.tar.gz\n")
    done = fakes.run(download_script(fakes, url))
    assert done.returncode == 1 and "lists no etcd-v3.5.17-linux-amd64.tar.gz" in done.stderr
    missing = fakes.run(download_script(fakes, url, version="3.5.99"))
    assert missing.returncode == 1 and f"cannot fetch {url}/v3.5.99/SHA256SUMS" in missing.stderr

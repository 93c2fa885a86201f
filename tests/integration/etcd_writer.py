"""A test client that writes numbered keys to etcd while a stack changes, recording what it acknowledged.

A put can fail without having been applied while a member restarts or reboots: its connection to the
stopping member breaks ("missing content-type", connection refused), or, during a leadership hand-off, Raft
drops the proposals that reach the transferring leader (raft.go stepLeader: "transfer leadership ... is in
progress; dropping proposal") and a follower that forwarded one waits for it until the client's deadline.
A client retries such a put (writing the same value again is harmless); the writer retries once and records
it in `retried`, unless `retry` is off. Anything still failing after the retry is in `failed`.
"""

from __future__ import annotations

import subprocess
import threading
import time


class EtcdWriter(threading.Thread):
    """Puts numbered keys under `prefix`, one etcdctl process per write (subclasses say how: `put`)."""

    def __init__(self, prefix: str, retry: bool = True):
        super().__init__(daemon=True)
        self.prefix, self.retry = prefix, retry
        self.acked: list[tuple[float, str]] = []  # (acknowledged at, key)
        self.started: dict[str, float] = {}  # key -> when its put started
        self.failed: list[tuple[float, str]] = []
        self.retried: list[tuple[float, str]] = []  # first attempts that lost their connection
        self.failures: list[tuple[float, float, str]] = []  # (started, ended, full stderr), for diagnosis
        self.halt = threading.Event()

    def put(self, key: str, value: str) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def run(self) -> None:
        index = 0
        while not self.halt.is_set():
            key = f"{self.prefix}/{index:06d}"
            started = self.started[key] = time.monotonic()
            done = self.put(key, str(index))
            if self.retry and done.returncode != 0:
                self.retried.append((started, done.stderr.strip().splitlines()[-1][-200:] if done.stderr else ""))
                done = self.put(key, str(index))
            if done.returncode == 0 and done.stdout.strip() == "OK":
                self.acked.append((time.monotonic(), key))
            else:
                self.failed.append((started, done.stderr.strip()[-300:]))
                self.failures.append((started, time.monotonic(), done.stderr))
            index += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)

    def counts(self) -> dict[str, int]:
        return {"acked": len(self.acked), "retried_once": len(self.retried), "failed": len(self.failed)}

    def slowest_put(self) -> float:
        """The longest time an acknowledged put took, in seconds."""
        return round(max((t - self.started[key] for t, key in self.acked), default=0.0), 2)

    def first_ack_after(self, moment: float) -> float:
        """When the first write started after `moment` was acknowledged."""
        return min(t for t, key in self.acked if self.started[key] > moment)

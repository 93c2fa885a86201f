"""How the recipes reach a host over SSH: one connection description, rendered as pulumi-command's
`ConnectionArgs` (user, port, key, pinned host key, bastion, dial limits)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.shared.scripts import remote_invocation

# pulumi-command retries a failed dial with a backoff capped at 5 s, so this many dials cover ~5 s each.
SECONDS_PER_DIAL = 5


def sudo_refused_hint(user: str) -> str:
    """What to do when `sudo -n` asks `user` for a password (current Raspberry Pi OS images may)."""
    dropin = f"/etc/sudoers.d/010_{user}-nopasswd"
    return (f"error: {user} cannot run sudo without a password here, and every step runs through `sudo -n`. "
            f"Allow it once, on the host: echo '{user} ALL=(ALL) NOPASSWD: ALL' | sudo tee {dropin} && "
            f"sudo chmod 0440 {dropin} && sudo visudo -cf {dropin} (then `sudo -n true` succeeds), "
            "or log in as root (ssh.user / nodes[].user).")


@dataclass(frozen=True)
class Bastion:
    host: str
    port: int = 22
    user: str = "root"


@dataclass(frozen=True)
class SshConnection:
    """How to reach a host. Credentials are secret Outputs; with neither, pulumi-command uses SSH_AUTH_SOCK.

    `host` and `host_key` may be Outputs of the resource that made the host (a cloud VM's address, the host
    key it was booted with): every step on the host then waits for that resource."""

    host: pulumi.Input[str]
    port: int = 22
    user: str = "root"
    private_key: pulumi.Input[str] | None = None
    private_key_passphrase: pulumi.Input[str] | None = None
    host_key: pulumi.Input[str] | None = None
    proxy: Bastion | None = None
    dial_error_limit: int = 10
    per_dial_timeout: int = 15

    @property
    def become(self) -> bool:
        """Steps need root: a non-root login runs them through `sudo -n`."""
        return self.user != "root"

    def command_line(self, script: str) -> str:
        """The command line that runs `script` as root: directly for root, else through `sudo -n`, first
        checking that sudo does not ask for a password (it would fail with only "a password is required")."""
        invocation = remote_invocation(script, self.become)
        if not self.become:
            return invocation
        refused = f"printf '%s\\n' {shlex.quote(sudo_refused_hint(self.user))} >&2"
        return f"if ! sudo -n true 2>/dev/null; then {refused}; exit 1; fi; {invocation}"

    def args(self, dial_error_limit: int | None = None) -> command.remote.ConnectionArgs:
        proxy = None
        if self.proxy is not None:
            proxy = command.remote.ProxyConnectionArgs(
                host=self.proxy.host, port=self.proxy.port, user=self.proxy.user,
                private_key=self.private_key, private_key_password=self.private_key_passphrase,
                dial_error_limit=self.dial_error_limit, per_dial_timeout=self.per_dial_timeout,
            )
        return command.remote.ConnectionArgs(
            host=self.host, port=self.port, user=self.user,
            private_key=self.private_key, private_key_password=self.private_key_passphrase,
            host_key=self.host_key, proxy=proxy,
            dial_error_limit=self.dial_error_limit if dial_error_limit is None else dial_error_limit,
            per_dial_timeout=self.per_dial_timeout,
        )

# Helpers every recipe's steps use. Each step reads the host's state and changes only what differs,
# printing one "changed: ..." line per change, so a re-run on a prepared host prints none.
changed() { printf 'changed: %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
is_installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

# wait_until SECONDS DESCRIPTION COMMAND...: retries COMMAND every second until it succeeds; on timeout,
# prints what COMMAND said on its last attempt and returns 1. COMMAND runs in this shell (it may set
# variables) and never once more after the deadline (it may change something, e.g. a membership).
wait_until() {
  local timeout=$1 what=$2 deadline said
  shift 2
  deadline=$((SECONDS + timeout))
  said=$(mktemp)
  until "$@" >"$said" 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'error: timed out after %ss waiting for %s\n' "$timeout" "$what" >&2
      cat "$said" >&2
      rm -f "$said"
      return 1
    fi
    sleep 1
  done
  rm -f "$said"
}

# memory_cgroup_enabled: the kernel runs with the memory cgroup controller (Raspberry Pi OS needs cgroup flags).
memory_cgroup_enabled() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    grep -qw memory /sys/fs/cgroup/cgroup.controllers
  else
    [ "$(awk '$1 == "memory" { print $4 }' /proc/cgroups 2>/dev/null)" = 1 ]
  fi
}

# wireguard_available: the kernel has WireGuard built in, loaded, or as a module it can load.
wireguard_available() {
  [ -d /sys/module/wireguard ] || modinfo wireguard >/dev/null 2>&1
}

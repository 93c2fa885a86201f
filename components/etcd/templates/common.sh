# Helpers shared by the etcd steps (after node/common.sh: changed; node/files.sh: install_file, apt_install).
# Parameters: PKI_DIR, ETCDCTL_BIN.
export ETCDCTL_API=3

# etcdctl_as_member ARGS...: etcdctl with this host's member certificate as its client certificate.
etcdctl_as_member() {
  "$ETCDCTL_BIN" --cacert="$PKI_DIR/ca.crt" --cert="$PKI_DIR/member.crt" --key="$PKI_DIR/member.key" \
    --dial-timeout=3s --command-timeout=10s "$@"
}

# wait_until SECONDS DESCRIPTION COMMAND...: retries COMMAND every second until it succeeds.
wait_until() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'error: timed out after %ss waiting for %s\n' "$timeout" "$what" >&2
      "$@" >&2 || true
      return 1
    fi
    sleep 1
  done
}

# members ENDPOINTS: one line per member, "ID|STATUS|NAME|PEER_URLS|CLIENT_URLS|IS_LEARNER".
members() {
  etcdctl_as_member --endpoints="$1" member list | sed 's/, /|/g'
}

# take_snapshot ENDPOINT LABEL: saves a snapshot before a membership change; prints its path.
take_snapshot() {
  local endpoint=$1 label=$2 target
  install -d -m 0700 "$SNAPSHOT_DIR"
  target="$SNAPSHOT_DIR/$label-$(date -u +%Y%m%dT%H%M%SZ).db"
  # etcdctl writes to "$target.part" and renames it when the snapshot is complete.
  etcdctl_as_member --endpoints="$endpoint" --command-timeout=120s snapshot save "$target" >/dev/null
  changed "snapshot saved to $target"
}

# start_service: enables the member's service and starts it without waiting (a new cluster becomes ready
# only once a quorum of its members has started). Returns 1 when it was already running.
start_service() {
  if ! systemctl is-enabled --quiet "$SERVICE"; then
    systemctl enable --quiet "$SERVICE"
    changed "enabled $SERVICE"
  fi
  if systemctl is-active --quiet "$SERVICE"; then
    return 1
  fi
  systemctl start --no-block "$SERVICE"
  changed "started $SERVICE"
}

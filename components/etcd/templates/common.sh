# Helpers shared by the etcd steps (after shared/common.sh: changed, warn, wait_until).
# Parameters: PKI_DIR, ETCDCTL_BIN, SNAPSHOT_DIR, SNAPSHOT_RETENTION.
export ETCDCTL_API=3

# etcdctl_as_member ARGS...: etcdctl with this host's member certificate as its client certificate.
etcdctl_as_member() {
  "$ETCDCTL_BIN" --cacert="$PKI_DIR/ca.crt" --cert="$PKI_DIR/member.crt" --key="$PKI_DIR/member.key" \
    --dial-timeout=3s --command-timeout=10s "$@"
}

# members ENDPOINTS: one line per member, "ID|STATUS|NAME|PEER_URLS|CLIENT_URLS|IS_LEARNER" (a member added
# but never started has STATUS "unstarted", no name and no client URLs).
members() {
  etcdctl_as_member --endpoints="$1" member list | sed 's/, /|/g'
}

# healthy_voters ENDPOINTS [EXCEPT_NAME]: prints how many voting members answer `endpoint health` and how
# many voting members there are ("HEALTHY VOTERS"), not counting EXCEPT_NAME. Learners are not asked: they
# refuse the health check's read, and they do not count for quorum.
healthy_voters() {
  local list except=${2:-} healthy=0 voters=0 name urls learner
  list=$(members "$1") || return 1
  while IFS='|' read -r _ _ name _ urls learner; do
    [ "$learner" = false ] || continue
    [ -n "$except" ] && [ "$name" = "$except" ] && continue
    voters=$((voters + 1))
    # A voting member that never started has no client URL: it counts as unhealthy.
    if [ -n "$urls" ] && etcdctl_as_member --endpoints="$urls" endpoint health >/dev/null 2>&1; then
      healthy=$((healthy + 1))
    fi
  done <<<"$list"
  printf '%s %s\n' "$healthy" "$voters"
}

# voting_members_healthy ENDPOINTS: every voting member answers `endpoint health` (learners are left out).
voting_members_healthy() {
  local counts
  counts=$(healthy_voters "$1") || return 1
  [ "${counts% *}" -gt 0 ] && [ "${counts% *}" = "${counts#* }" ]
}

# json_number JSON KEY: the first numeric value of "KEY" in etcdctl's JSON output, as text (member IDs are
# uint64: they must never go through shell or awk arithmetic).
json_number() {
  grep -o "\"$2\":[0-9]*" <<<"$1" | head -n 1 | cut -d: -f2
}

# prune_snapshots LABEL: keeps the newest SNAPSHOT_RETENTION snapshots of each kind (LABEL-<time>.db, and
# before-*.db saved before membership changes) and removes partial files an interrupted save left behind.
# Runs under the snapshot lock, so no save is in progress.
prune_snapshots() {
  local pattern old
  for pattern in "before-*.db" "$1-[0-9]*T*Z.db"; do
    find "$SNAPSHOT_DIR" -maxdepth 1 -type f -name "$pattern" -printf '%T@ %p\n' | sort -rn \
      | tail -n +"$((SNAPSHOT_RETENTION + 1))" | cut -d' ' -f2- | while read -r old; do
        rm -f -- "$old"
        changed "removed old snapshot $old"
      done
  done
  find "$SNAPSHOT_DIR" -maxdepth 1 -type f -name "*.part" -print | while read -r old; do
    rm -f -- "$old"
    changed "removed partial snapshot $old"
  done
}

# take_snapshot ENDPOINT LABEL: saves a snapshot of ENDPOINT's keyspace as LABEL-<time>.db, after checking
# there is room for it; one save at a time per host. Prints the path.
take_snapshot() {
  local endpoint=$1 label=$2 target status size free needed lock
  install -d -m 0700 "$SNAPSHOT_DIR"
  exec {lock}>"$SNAPSHOT_DIR/.lock"
  flock "$lock"
  status=$(etcdctl_as_member --endpoints="$endpoint" endpoint status -w json)
  size=$(json_number "$status" dbSize)
  free=$(df -B1 --output=avail "$SNAPSHOT_DIR" | tail -n 1 | tr -d ' ')
  needed=$(( ${size:-0} + ${size:-0} / 10 + 1048576 ))
  if [ "$free" -lt "$needed" ]; then
    printf 'error: not enough free space for a snapshot in %s: %s bytes free, %s needed (database %s bytes)\n' \
      "$SNAPSHOT_DIR" "$free" "$needed" "${size:-?}" >&2
    exec {lock}>&-
    return 1
  fi
  target="$SNAPSHOT_DIR/$label-$(date -u +%Y%m%dT%H%M%SZ).db"
  # etcdctl writes to "$target.part" and renames it when the snapshot is complete.
  etcdctl_as_member --endpoints="$endpoint" --command-timeout=120s snapshot save "$target" >/dev/null
  changed "snapshot saved to $target"
  prune_snapshots "$label"
  exec {lock}>&-
}

# start_service: enables the member's service and starts it without waiting (a new cluster becomes ready
# only once a quorum of its members has started). Returns 1 when it was already running; a failure to start
# ends the script (callers test the return value, which would silence `set -e`).
start_service() {
  if ! systemctl is-enabled --quiet "$SERVICE"; then
    systemctl enable --quiet "$SERVICE" || exit 1
    changed "enabled $SERVICE"
  fi
  if systemctl is-active --quiet "$SERVICE"; then
    return 1
  fi
  if ! systemctl start --no-block "$SERVICE"; then
    printf 'error: could not start %s\n' "$SERVICE" >&2
    exit 1
  fi
  changed "started $SERVICE"
}

# enable_snapshot_timer: periodic snapshots, once this host is a member (a learner cannot be snapshotted).
enable_snapshot_timer() {
  if ! systemctl is-enabled --quiet "$SNAPSHOT_UNIT.timer"; then
    systemctl enable --quiet "$SNAPSHOT_UNIT.timer"
    changed "enabled $SNAPSHOT_UNIT.timer"
  fi
  if ! systemctl is-active --quiet "$SNAPSHOT_UNIT.timer"; then
    systemctl start "$SNAPSHOT_UNIT.timer"
    changed "started $SNAPSHOT_UNIT.timer"
  fi
}

# Adds this host to a running cluster, following etcd's runtime reconfiguration guide: only when every
# member is healthy, a snapshot first, then `member add --learner`, start, and `member promote` once the
# learner has caught up. Safe to re-run at any point. A data dir left from an earlier membership is
# moved aside, never reused.
# Parameters: MEMBER_NAME, PEER_URL, SEED_ENDPOINTS (client URLs of the bootstrap members), CONFIG_DIR,
# DATA_DIR, SERVICE, LOCAL_CLIENT_URL, SNAPSHOT_DIR, TIMEOUT.
cluster_healthy() {
  etcdctl_as_member --endpoints="$SEED_ENDPOINTS" endpoint health --cluster
}

# This member's entry: its peer URL, and its name (or no name yet: added, not started).
own_entry() {
  members "$SEED_ENDPOINTS" | awk -F'|' -v url="$PEER_URL" -v name="$MEMBER_NAME" \
    '$4 == url && ($3 == name || $3 == "")'
}

first_healthy_seed() {
  local seed
  for seed in ${SEED_ENDPOINTS//,/ }; do
    if etcdctl_as_member --endpoints="$seed" endpoint health >/dev/null 2>&1; then
      printf '%s\n' "$seed"
      return 0
    fi
  done
  return 1
}

write_membership() {
  # Not through a pipe: install_file must run in this shell to set FILE_CHANGED.
  install_file "$CONFIG_DIR/membership-$MEMBER_NAME.env" 0644 \
    <<<"$(printf 'ETCD_INITIAL_CLUSTER=%s\nETCD_INITIAL_CLUSTER_STATE=existing' "$1")"
  if [ "$FILE_CHANGED" -eq 1 ]; then
    printf 'membership of %s: %s\n' "$MEMBER_NAME" "$1"
  fi
}

retire_data_dir() {
  local retired
  if [ -e "$DATA_DIR" ]; then
    systemctl stop "$SERVICE" 2>/dev/null || true
    retired="$DATA_DIR.retired-$(date -u +%Y%m%dT%H%M%SZ)"
    mv "$DATA_DIR" "$retired"
    changed "moved the data dir of an earlier membership to $retired"
  fi
}

promote() {
  local output
  if output=$(etcdctl_as_member --endpoints="$SEED_ENDPOINTS" member promote "$MEMBER_ID" 2>&1); then
    changed "promoted $MEMBER_NAME to a voting member"
    return 0
  fi
  case "$output" in
    *"not a learner"*) return 0 ;;
    *) return 1 ;;
  esac
}

is_voting_and_started() {
  [ "$(own_entry | awk -F'|' '{print $2 "," $6}')" = "started,false" ]
}

local_health() {
  etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" endpoint health
}

# add_learner: `member add --learner`, retried by the caller: with strict reconfig checks etcd refuses
# while the leader has not been connected to every voting member for 5 s (e.g. right after a promotion).
ADDED=
add_learner() {
  if [ -n "$(own_entry)" ]; then
    return 0  # an earlier attempt got through
  fi
  ADDED=$(etcdctl_as_member --endpoints="$SEED_ENDPOINTS" member add "$MEMBER_NAME" \
    --peer-urls="$PEER_URL" --learner)
}

MEMBER_ID=
join() {
  local initial
  wait_until "$TIMEOUT" "every member to be healthy before adding $MEMBER_NAME" cluster_healthy
  if [ -z "$(own_entry)" ]; then
    take_snapshot "$(first_healthy_seed)" "before-add-$MEMBER_NAME"
    retire_data_dir
    wait_until "$TIMEOUT" "etcd to accept $MEMBER_NAME as a learner" add_learner
    changed "added $MEMBER_NAME as a learner"
  fi
  MEMBER_ID=$(own_entry | cut -d'|' -f1)
  initial=$(printf '%s\n' "$ADDED" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')
  if [ -z "$initial" ] && [ ! -f "$CONFIG_DIR/membership-$MEMBER_NAME.env" ]; then
    # Added by an earlier run that stopped before writing the file: rebuild it from the member list.
    initial=$(members "$SEED_ENDPOINTS" | awk -F'|' -v url="$PEER_URL" -v name="$MEMBER_NAME" '
      { n = ($4 == url) ? name : $3; split($4, urls, ","); for (i in urls) out = out sep n "=" urls[i]; sep = "," }
      END { print out }')
  fi
  if [ -n "$initial" ]; then
    write_membership "$initial"
  fi
  start_service || true  # already running: nothing to start
  wait_until "$TIMEOUT" "$MEMBER_NAME to catch up and be promoted" promote
  wait_until "$TIMEOUT" "$MEMBER_NAME to be a started voting member" is_voting_and_started
  wait_until "$TIMEOUT" "$MEMBER_NAME to be healthy" local_health
  wait_until "$TIMEOUT" "every member to be healthy after adding $MEMBER_NAME" cluster_healthy
  printf '%s is a voting member (%s)\n' "$MEMBER_NAME" "$MEMBER_ID"
}

join

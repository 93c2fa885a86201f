# Adds this host to a running cluster, following etcd's runtime reconfiguration guide: only when every
# voting member is healthy, a snapshot first, then `member add --learner`, start, and `member promote` once
# the learner has caught up. Every decision is read from the cluster and the host, so a re-run resumes
# wherever an earlier run stopped, and a run after a successful join changes nothing. A data dir left from
# an earlier membership is moved aside, never reused. A join that fails before its learner ever started
# removes that learner again (etcd allows one learner at a time: a leftover would block every later join).
# Parameters: MEMBER_NAME, PEER_URL, SEED_ENDPOINTS (client URLs of the members before this one),
# CONFIG_DIR, DATA_DIR, SERVICE, SNAPSHOT_UNIT, LOCAL_CLIENT_URL, SNAPSHOT_DIR, TIMEOUT.

# This member's entry: its peer URL, and its name (or no name yet: added, never started).
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

is_voting() {
  [ "$(own_entry | cut -d'|' -f6)" = false ]
}

# promote: success once this member votes. etcd answers an already promoted member with
# "can only promote a learner member" (ErrMemberNotLearner) and a learner still catching up with
# "can only promote a learner member which is in sync with leader" (ErrLearnerNotReady): only the latter
# is worth retrying.
PROMOTION=
promote() {
  local output
  if is_voting; then
    PROMOTION="$MEMBER_NAME was already a voting member"
    return 0
  fi
  if output=$(etcdctl_as_member --endpoints="$SEED_ENDPOINTS" member promote "$MEMBER_ID" 2>&1); then
    PROMOTION="changed: promoted $MEMBER_NAME to a voting member"
    return 0
  fi
  if grep -q 'can only promote a learner member' <<<"$output" && ! grep -q 'in sync with leader' <<<"$output"; then
    PROMOTION="$MEMBER_NAME was already a voting member (promoted by an earlier run)"
    return 0
  fi
  return 1
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

# remove_unstarted_learner: on a failed run, this member's learner if it never started (no name yet).
remove_unstarted_learner() {
  local status=$? entry
  trap - EXIT
  if [ "$status" -ne 0 ] && entry=$(own_entry 2>/dev/null) && [ -n "$entry" ] \
    && [ -z "$(cut -d'|' -f3 <<<"$entry")" ]; then
    systemctl stop "$SERVICE" 2>/dev/null || true
    if etcdctl_as_member --endpoints="$SEED_ENDPOINTS" member remove "$(cut -d'|' -f1 <<<"$entry")" >/dev/null; then
      rm -f "$CONFIG_DIR/membership-$MEMBER_NAME.env"
      printf 'removed the learner of %s again: it never started (the next run adds it anew)\n' "$MEMBER_NAME" >&2
    fi
  fi
  exit "$status"
}

MEMBER_ID=
join() {
  local initial
  trap remove_unstarted_learner EXIT
  if [ -z "$(own_entry)" ]; then
    wait_until "$TIMEOUT" "every voting member to be healthy before adding $MEMBER_NAME" \
      voting_members_healthy "$SEED_ENDPOINTS"
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
  printf '%s\n' "$PROMOTION"
  wait_until "$TIMEOUT" "$MEMBER_NAME to be a started voting member" is_voting_and_started
  wait_until "$TIMEOUT" "$MEMBER_NAME to be healthy" local_health
  wait_until "$TIMEOUT" "every voting member to be healthy after adding $MEMBER_NAME" \
    voting_members_healthy "$SEED_ENDPOINTS"
  if [ ! -f "$CONFIG_DIR/joined-$MEMBER_NAME" ]; then
    : >"$CONFIG_DIR/joined-$MEMBER_NAME"
    changed "recorded that $MEMBER_NAME has joined"
  fi
  enable_snapshot_timer
  printf '%s is a voting member (%s)\n' "$MEMBER_NAME" "$MEMBER_ID"
}

join

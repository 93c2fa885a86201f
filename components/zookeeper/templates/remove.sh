# Removes a server from the ensemble by dynamic reconfiguration (`reconfig -remove ID` as the super user),
# through a serving one of the current servers; nothing runs on the removed server's host. Refuses when the
# voters that remain could not hold a quorum (a majority of them serving); a server that is not a member any more
# is done, so the step is safe to re-run at any point. ZooKeeper does not stop a removed server that still runs:
# it stays a non-voting follower until someone stops it.
# Reads the super user's password on stdin (it goes to the client's stdin, never to a command line).
# Parameters: TARGET_NAME, TARGET_ID, SERVER_ENDPOINTS (the current servers), CONFIG_DIR, TIMEOUT.
PASSWORD=
MEMBERS=
REMAINING=0
SERVING=0
NOT_SERVING=

read_membership() {
  find_seed "${SERVER_ENDPOINTS[@]}" || return 1
  MEMBERS=$(live_membership) && [ -n "$MEMBERS" ]
}

target_is_member() {
  grep -q "^server\.$TARGET_ID=" <<<"$MEMBERS"
}

# quorum_after_removal: in the membership read last, a majority of the voters that remain serve. (While the
# change commits ZooKeeper also needs a quorum of the current voters: it has one, or no server would serve.)
quorum_after_removal() {
  local line
  REMAINING=0 SERVING=0 NOT_SERVING=
  while IFS= read -r line; do
    case "$line" in "server.$TARGET_ID="* | "") continue ;; esac
    REMAINING=$((REMAINING + 1))
    if is_serving "$(client_endpoint "$line")"; then
      SERVING=$((SERVING + 1))
    else
      NOT_SERVING+="${line%%=*} "
    fi
  done <<<"$MEMBERS"
  [ "$REMAINING" -gt 0 ] && [ "$SERVING" -ge $((REMAINING / 2 + 1)) ]
}

current_quorum_after_removal() {
  read_membership && quorum_after_removal
}

# reconfig_remove: one attempt (another reconfiguration in progress, or a leader change, fails it for now).
reconfig_remove() {
  local output
  read_membership || return 1
  target_is_member || return 0
  quorum_after_removal || return 1
  output=$(zk_cli "$SEED" "addauth digest super:$PASSWORD" "reconfig -remove $TARGET_ID")
  grep -q '^Committed new configuration' <<<"$output"
}

remove_server() {
  IFS= read -r PASSWORD || true
  if [ -z "$PASSWORD" ]; then
    printf 'error: expected the super user password on stdin\n' >&2
    exit 1
  fi
  wait_until "$TIMEOUT" "a serving server of the ensemble (${SERVER_ENDPOINTS[*]})" read_membership
  if ! target_is_member; then
    printf '%s (server.%s) is not a member of the ensemble (already removed)\n' "$TARGET_NAME" "$TARGET_ID"
    return 0
  fi
  if ! wait_until "$TIMEOUT" "a quorum of the servers that remain without $TARGET_NAME" \
    current_quorum_after_removal; then
    printf 'error: refusing to remove %s (server.%s): %s of the %s servers that would remain serve, a quorum needs %s; not serving: %s\n' \
      "$TARGET_NAME" "$TARGET_ID" "$SERVING" "$REMAINING" "$((REMAINING / 2 + 1))" "${NOT_SERVING:-none}" >&2
    exit 1
  fi
  wait_until "$TIMEOUT" "the ensemble to commit reconfig -remove $TARGET_ID" reconfig_remove
  changed "removed $TARGET_NAME (server.$TARGET_ID) from the ensemble"
}

remove_server

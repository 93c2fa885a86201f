# Adds this server to a running ensemble by dynamic reconfiguration (ZooKeeper's documented incremental
# mode): it starts with the live membership plus itself, syncs as a non-voting follower, and becomes a voter
# with `reconfig -add` through the ensemble. Safe to re-run at any point. Reads the super user's password
# on stdin (reconfiguration needs it; it goes to the client's stdin, never to a command line).
# Parameters: SERVER_NAME, OWN_LINE, SEED_ENDPOINTS (the servers before this one), CONFIG_DIR, SERVICE,
# CLIENT_PORT, TIMEOUT.
PASSWORD=

is_voting_member() {
  live_membership | grep -qxF "$OWN_LINE"
}

add_voter() {
  local output
  find_seed "${SEED_ENDPOINTS[@]}" || return 1
  is_voting_member && return 0
  output=$(zk_cli "$SEED" "addauth digest super:$PASSWORD" "reconfig -add $OWN_LINE")
  grep -q '^Committed new configuration' <<<"$output"
}

join() {
  local own_id=${OWN_LINE%%=*} members
  IFS= read -r PASSWORD || true
  if [ -z "$PASSWORD" ]; then
    printf 'error: expected the super user password on stdin\n' >&2
    exit 1
  fi
  wait_until "$TIMEOUT" "a serving member of the ensemble (${SEED_ENDPOINTS[*]})" find_seed "${SEED_ENDPOINTS[@]}"
  if ! is_voting_member; then
    # Until it votes, the server can (re)start only from this record: once synced it adopts the committed
    # membership, in which it is absent (ZooKeeper's reconfiguration guide), and start-prepare falls back here.
    members=$(live_membership | grep -v "^$own_id=" || true)
    if [ -z "$members" ]; then
      printf 'error: could not read the membership from %s\n' "$SEED" >&2
      exit 1
    fi
    # Not through a pipe: install_file must run in this shell to set FILE_CHANGED.
    install_file "$CONFIG_DIR/membership-$SERVER_NAME.dynamic" 0644 <<<"$(printf '%s\n%s' "$members" "$OWN_LINE")"
    if [ "$FILE_CHANGED" -eq 1 ]; then
      printf '%s starts as a non-voting follower of: %s\n' "$SERVER_NAME" "$(tr '\n' ' ' <<<"$members")"
    fi
  fi
  if ! systemctl is-enabled --quiet "$SERVICE"; then
    systemctl enable --quiet "$SERVICE"
    changed "enabled $SERVICE"
  fi
  if ! systemctl is-active --quiet "$SERVICE"; then
    # A server that kept failing to start (before the record above existed) may have hit its start limit.
    systemctl reset-failed "$SERVICE" 2>/dev/null || true
    systemctl start "$SERVICE"
    changed "started $SERVICE"
  fi
  wait_until "$TIMEOUT" "$SERVER_NAME to sync with the leader" is_serving "127.0.0.1:$CLIENT_PORT"
  if ! is_voting_member; then
    wait_until "$TIMEOUT" "the ensemble to accept $SERVER_NAME as a voter (reconfig -add)" add_voter
    changed "added $SERVER_NAME to the ensemble: $OWN_LINE"
  fi
  wait_until "$TIMEOUT" "$SERVER_NAME to serve as a voter" is_serving "127.0.0.1:$CLIENT_PORT"
  printf '%s is a voting member (%s)\n' "$SERVER_NAME" "$OWN_LINE"
}

join

# Restarts of a running server, one at a time (after zookeeper/common.sh). The other servers are read from
# the membership ZooKeeper itself keeps, so the step does not change when the ensemble grows.
# Parameters: SERVER_NAME, SERVER_ID, SERVICE, CLIENT_PORT, RUNTIME_DIR, STARTED_WITH, HEALTH_TIMEOUT.
PEER_LABELS=()
PEER_ENDPOINTS=()

# read_peers: the other members of the live membership, as "server.N" labels and HOST:PORT client endpoints.
read_peers() {
  local pointer line id spec host
  PEER_LABELS=()
  PEER_ENDPOINTS=()
  [ -f "$RUNTIME_DIR/zoo.cfg" ] || return 0  # (sed would fail the pipeline, and the script with it)
  pointer=$(sed -n 's/^dynamicConfigFile=//p' "$RUNTIME_DIR/zoo.cfg" | tail -n 1)
  [ -n "$pointer" ] && [ -f "$pointer" ] || return 0
  # ZooKeeper writes the file without a final newline: the last line is read too.
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in server.*=*) ;; *) continue ;; esac
    id=${line%%=*}
    id=${id#server.}
    [ "$id" = "$SERVER_ID" ] && continue
    spec=${line#*=}
    if [ "${spec:0:1}" = "[" ]; then
      host=${spec#[}
      host=${host%%]*}
    else
      host=${spec%%:*}
    fi
    PEER_LABELS+=("server.$id")
    PEER_ENDPOINTS+=("$host:${line##*:}")
  done <"$pointer"
}

# quorum_without_me: the other servers that serve are a majority of the whole ensemble, so it keeps serving
# while this one restarts.
quorum_without_me() {
  local peer serving=0 needed=$(((${#PEER_ENDPOINTS[@]} + 1) / 2 + 1))
  for peer in "${PEER_ENDPOINTS[@]}"; do
    if is_serving "$peer"; then
      serving=$((serving + 1))
    fi
  done
  [ "$serving" -ge "$needed" ]
}

not_serving_peers() {
  local index
  for index in "${!PEER_ENDPOINTS[@]}"; do
    is_serving "${PEER_ENDPOINTS[$index]}" || printf '%s (%s) ' "${PEER_LABELS[$index]}" "${PEER_ENDPOINTS[$index]}"
  done
}

is_leader() {
  [ "$(server_mode "127.0.0.1:$CLIENT_PORT")" = leader ]
}

# restart_needed: the server runs, and with another configuration than the one on disk.
restart_needed() {
  systemctl is-active --quiet "$SERVICE" && [ "$(cat "$STARTED_WITH" 2>/dev/null)" != "$(config_hash)" ]
}

# restart_server: restarts this server once the others hold a quorum without it, then waits until it serves
# again (it has rejoined the ensemble and synced with the leader).
restart_server() {
  local role
  role=$(server_mode "127.0.0.1:$CLIENT_PORT")
  read_peers
  if [ "${#PEER_ENDPOINTS[@]}" -gt 0 ] && \
    ! wait_until "$HEALTH_TIMEOUT" "a quorum of the other servers before restarting $SERVER_NAME" quorum_without_me; then
    printf 'error: refusing to restart %s: not serving: %s- without them the ensemble would lose its quorum\n' \
      "$SERVER_NAME" "$(not_serving_peers)" >&2
    exit 1
  fi
  systemctl restart "$SERVICE"
  wait_until "$HEALTH_TIMEOUT" "$SERVER_NAME to serve again after its restart" is_serving "127.0.0.1:$CLIENT_PORT"
  changed "restarted $SERVICE (it was ${role:-not serving}; its configuration changed)"
}

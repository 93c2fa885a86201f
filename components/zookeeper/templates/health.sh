# The health gate: waits until every server serves, exactly one of them leads and the leader counts every
# other server as a synced voting follower. Changes nothing. Parameters: SERVER_NAMES, SERVER_ENDPOINTS, TIMEOUT.
LEADER=
ensemble_ready() {
  local index mode leaders=0 synced
  LEADER=
  for index in "${!SERVER_ENDPOINTS[@]}"; do
    mode=$(server_mode "${SERVER_ENDPOINTS[$index]}")
    case "$mode" in
      leader)
        leaders=$((leaders + 1))
        LEADER=$index
        ;;
      follower) ;;
      *) return 1 ;;
    esac
  done
  [ "$leaders" -eq 1 ] || return 1
  [ "${#SERVER_ENDPOINTS[@]}" -eq 1 ] && return 0
  # Every other server is a synced voter (a server still joining counts as a non-voting follower).
  synced=$(four_letter "${SERVER_ENDPOINTS[$LEADER]}" mntr |
    awk '$1 == "zk_synced_followers" || $1 == "zk_synced_non_voting_followers" { printf "%s ", $2 }')
  [ "$synced" = "$((${#SERVER_ENDPOINTS[@]} - 1)) 0 " ]
}

describe() {
  local index
  for index in "${!SERVER_ENDPOINTS[@]}"; do
    printf '  %s (%s): %s\n' "${SERVER_NAMES[$index]}" "${SERVER_ENDPOINTS[$index]}" \
      "$(server_mode "${SERVER_ENDPOINTS[$index]}" | grep . || echo 'not serving')"
  done
}

if ! wait_until "$TIMEOUT" "every ZooKeeper server to serve with one leader" ensemble_ready; then
  describe >&2
  exit 1
fi
printf 'healthy: %s servers, leader %s\n' "${#SERVER_ENDPOINTS[@]}" "${SERVER_NAMES[$LEADER]}"

# The health gate: waits until every server serves, exactly one of them leads, the leader counts every other server
# as a synced voting follower, and the membership ZooKeeper keeps is exactly these servers (a server still joining,
# or a removed one still running, is a non-voting follower: it does not count). Changes nothing.
# Parameters: SERVER_NAMES, SERVER_ENDPOINTS, MEMBERS (the servers' membership lines), MEMBERSHIP_CONFIG (the
# runtime zoo.cfg of the server this runs on: it names the newest membership file), TIMEOUT.
LEADER=

membership_is_the_servers() {
  local pointer
  pointer=$(sed -n 's/^dynamicConfigFile=//p' "$MEMBERSHIP_CONFIG" 2>/dev/null | tail -n 1)
  [ -n "$pointer" ] && [ -f "$pointer" ] || return 1
  [ "$(grep -E '^server\.[0-9]+=' "$pointer" | sort)" = "$(printf '%s\n' "${MEMBERS[@]}" | sort)" ]
}

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
  membership_is_the_servers || return 1
  [ "${#SERVER_ENDPOINTS[@]}" -eq 1 ] && return 0
  # zk_synced_followers counts every synced follower, the non-voting ones too (ZooKeeper's Leader: its
  # non-voting followers are the forwarding followers that are not participants).
  synced=$(four_letter "${SERVER_ENDPOINTS[$LEADER]}" mntr | awk '
    $1 == "zk_synced_followers" { all = $2 } $1 == "zk_synced_non_voting_followers" { other = $2 }
    END { if (all != "" && other != "") print all - other }')
  [ "$synced" = "$((${#SERVER_ENDPOINTS[@]} - 1))" ]
}

describe() {
  local index
  for index in "${!SERVER_ENDPOINTS[@]}"; do
    printf '  %s (%s): %s\n' "${SERVER_NAMES[$index]}" "${SERVER_ENDPOINTS[$index]}" \
      "$(server_mode "${SERVER_ENDPOINTS[$index]}" | grep . || echo 'not serving')"
  done
  if ! membership_is_the_servers; then
    printf '  the membership (%s) is not: %s\n' "$MEMBERSHIP_CONFIG" "${MEMBERS[*]}"
  fi
}

if ! wait_until "$TIMEOUT" "every ZooKeeper server to serve with one leader" ensemble_ready; then
  describe >&2
  exit 1
fi
printf 'healthy: %s servers, leader %s\n' "${#SERVER_ENDPOINTS[@]}" "${SERVER_NAMES[$LEADER]}"

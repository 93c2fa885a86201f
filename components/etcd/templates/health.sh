# The cluster's health gate: waits until the membership is exactly the expected members, all started and
# voting (no learner, nothing left from an unfinished join or removal), and every one of them answers
# `endpoint health`. Changes nothing.
# Parameters: ENDPOINTS (client URLs, comma separated), EXPECTED_MEMBERS, TIMEOUT.
membership_matches() {
  local list actual expected
  list=$(members "$ENDPOINTS") || return 1
  actual=$(awk -F'|' '$2 == "started" && $6 == "false" {print $3}' <<<"$list" | sort | tr '\n' ' ')
  expected=$(printf '%s\n' "${EXPECTED_MEMBERS[@]}" | sort | tr '\n' ' ')
  [ "$actual" = "$expected" ] && [ "$(wc -l <<<"$list")" -eq "${#EXPECTED_MEMBERS[@]}" ]
}

cluster_ready() {
  membership_matches && voting_members_healthy "$ENDPOINTS"
}

wait_until "$TIMEOUT" "the etcd cluster to be healthy with exactly the voting members ${EXPECTED_MEMBERS[*]}" cluster_ready
printf 'healthy: %s voting members: %s\n' "${#EXPECTED_MEMBERS[@]}" "${EXPECTED_MEMBERS[*]}"

# The bootstrap health gate: waits until every member reports healthy and the membership is exactly
# the expected voting members. Changes nothing.
# Parameters: ENDPOINTS (client URLs, comma separated), EXPECTED_MEMBERS, TIMEOUT.
membership_matches() {
  local actual expected
  actual=$(members "$ENDPOINTS" | awk -F'|' '$2 == "started" && $6 == "false" {print $3}' | sort | tr '\n' ' ')
  expected=$(printf '%s\n' "${EXPECTED_MEMBERS[@]}" | sort | tr '\n' ' ')
  [ "$actual" = "$expected" ] && [ "$(members "$ENDPOINTS" | wc -l)" -eq "${#EXPECTED_MEMBERS[@]}" ]
}

cluster_ready() {
  etcdctl_as_member --endpoints="$ENDPOINTS" endpoint health --cluster && membership_matches
}

wait_until "$TIMEOUT" "the etcd cluster to be healthy with members ${EXPECTED_MEMBERS[*]}" cluster_ready
printf 'healthy: %s voting members: %s\n' "${#EXPECTED_MEMBERS[@]}" "${EXPECTED_MEMBERS[*]}"

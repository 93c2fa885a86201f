# Restarting a member without disturbing the cluster (after etcd/common.sh). Parameters: MEMBER_NAME,
# SERVICE, LOCAL_CLIENT_URL, STARTED_RECORD.

# hand_off_leadership: when this member leads, makes another healthy started voting member the leader first
# (`etcdctl move-leader`), so a planned restart costs the cluster no election timeout. Best effort.
# `endpoint status -w json` (its columns in `-w simple` moved in etcd 3.6); member IDs compared as text.
hand_off_leadership() {
  local state self leader list id status name urls learner target=
  state=$(etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" endpoint status -w json 2>/dev/null) || return 0
  self=$(json_number "$state" member_id)
  leader=$(json_number "$state" leader)
  if [ -z "$self" ] || [ "$self" != "$leader" ]; then
    return 0
  fi
  list=$(members "$LOCAL_CLIENT_URL" 2>/dev/null) || return 0
  while IFS='|' read -r id status name _ urls learner; do
    if [ "$name" != "$MEMBER_NAME" ] && [ "$status" = started ] && [ "$learner" = false ] && [ -n "$urls" ] \
      && etcdctl_as_member --endpoints="$urls" endpoint health >/dev/null 2>&1; then
      target=$id
      break
    fi
  done <<<"$list"
  if [ -n "$target" ] && etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" move-leader "$target" >/dev/null 2>&1; then
    changed "leadership moved to $target before the restart"
  fi
}

local_health() {
  etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" endpoint health
}

# quorum_without_me: the other voting members hold a quorum of the whole membership on their own, so
# restarting this member cannot make the cluster unavailable.
quorum_without_me() {
  local counts healthy others
  counts=$(healthy_voters "$LOCAL_CLIENT_URL" "$MEMBER_NAME") || return 1
  healthy=${counts% *}
  others=${counts#* }
  [ "$others" -eq 0 ] || [ "$healthy" -ge $(((others + 1) / 2 + 1)) ]
}

started_with() {
  cat "$STARTED_RECORD" 2>/dev/null || true
}

# running_with FILES_HASH: the service's current process started with these files, is up and healthy.
running_with() {
  [ "$(started_with)" = "$1" ] && systemctl is-active --quiet "$SERVICE" && local_health
}

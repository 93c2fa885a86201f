# Removes a member (typically a dead one) through this healthy member; nothing runs on the removed host.
# Refuses when the members that remain could not hold a quorum on their own. Safe to re-run.
# The target is found by name: a replacement may already use its peer URL.
# Parameters: TARGET_NAME, LOCAL_CLIENT_URL, SNAPSHOT_DIR.
remove_member() {
  local list target voters remaining needed healthy=0 url
  list=$(members "$LOCAL_CLIENT_URL")
  target=$(printf '%s\n' "$list" | awk -F'|' -v name="$TARGET_NAME" '$3 == name {print $1}')
  if [ -z "$target" ]; then
    printf '%s is not a member (already removed)\n' "$TARGET_NAME"
    return 0
  fi
  voters=$(printf '%s\n' "$list" | awk -F'|' '$6 == "false"' | wc -l)
  remaining=$((voters - 1))
  needed=$((remaining / 2 + 1))
  for url in $(printf '%s\n' "$list" | awk -F'|' -v id="$target" '$1 != id && $6 == "false" {print $5}' | tr ',' ' '); do
    if etcdctl_as_member --endpoints="$url" endpoint health >/dev/null 2>&1; then
      healthy=$((healthy + 1))
    fi
  done
  if [ "$healthy" -lt "$needed" ]; then
    printf 'error: refusing to remove %s: only %s of the %s remaining members are healthy (quorum needs %s)\n' \
      "$TARGET_NAME" "$healthy" "$remaining" "$needed" >&2
    exit 1
  fi
  take_snapshot "$LOCAL_CLIENT_URL" "before-remove-$TARGET_NAME"
  etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" member remove "$target" >/dev/null
  changed "removed member $TARGET_NAME ($target)"
}

remove_member

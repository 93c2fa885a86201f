# Removes a member (typically a dead one) through this healthy member; nothing runs on the removed host.
# Refuses when the voting members that remain could not hold a quorum on their own. Safe to re-run.
# The target is found by name, or, when it was added but never started (no name yet), by its peer URL;
# TARGET_PEER_URL is empty when a current member uses that URL (a replacement at the same address).
# Parameters: TARGET_NAME, TARGET_PEER_URL, LOCAL_CLIENT_URL, SNAPSHOT_DIR.
remove_member() {
  local list entry target learner voters remaining needed counts healthy
  list=$(members "$LOCAL_CLIENT_URL")
  entry=$(printf '%s\n' "$list" | awk -F'|' -v name="$TARGET_NAME" -v url="$TARGET_PEER_URL" \
    '$3 == name || ($3 == "" && url != "" && $4 == url)' | head -n 1)
  if [ -z "$entry" ]; then
    printf '%s is not a member (already removed)\n' "$TARGET_NAME"
    return 0
  fi
  target=$(cut -d'|' -f1 <<<"$entry")
  learner=$(cut -d'|' -f6 <<<"$entry")
  counts=$(healthy_voters "$LOCAL_CLIENT_URL" "$(cut -d'|' -f3 <<<"$entry")")
  healthy=${counts% *}
  voters=$(printf '%s\n' "$list" | awk -F'|' '$6 == "false"' | wc -l)
  # A learner does not vote: removing it leaves the quorum as it is.
  remaining=$voters
  if [ "$learner" = false ]; then
    remaining=$((voters - 1))
  fi
  needed=$((remaining / 2 + 1))
  if [ "$healthy" -lt "$needed" ]; then
    printf 'error: refusing to remove %s: only %s of the %s remaining voting members are healthy (quorum needs %s)\n' \
      "$TARGET_NAME" "$healthy" "$remaining" "$needed" >&2
    exit 1
  fi
  take_snapshot "$LOCAL_CLIENT_URL" "before-remove-$TARGET_NAME"
  etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" member remove "$target" >/dev/null
  changed "removed member $TARGET_NAME ($target)"
}

remove_member

# Saves a snapshot of this member's keyspace and keeps the newest SNAPSHOT_RETENTION ones.
# Run by the snapshot timer. Parameters: MEMBER_NAME, LOCAL_CLIENT_URL, SNAPSHOT_DIR, SNAPSHOT_RETENTION.
take_periodic_snapshot() {
  local old
  take_snapshot "$LOCAL_CLIENT_URL" "$MEMBER_NAME"
  find "$SNAPSHOT_DIR" -maxdepth 1 -name "$MEMBER_NAME-*.db" -printf '%T@ %p\n' | sort -rn \
    | tail -n +"$((SNAPSHOT_RETENTION + 1))" | cut -d' ' -f2- | while read -r old; do
      rm -f -- "$old"
      changed "removed old snapshot $old"
    done
}

take_periodic_snapshot

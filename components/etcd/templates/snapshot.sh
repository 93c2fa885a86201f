# Saves a snapshot of this member's keyspace, keeping the newest SNAPSHOT_RETENTION ones (take_snapshot
# checks the free space first and prunes old and partial files). Run by the snapshot timer.
# Parameters: MEMBER_NAME, LOCAL_CLIENT_URL, SNAPSHOT_DIR, SNAPSHOT_RETENTION.
take_snapshot "$LOCAL_CLIENT_URL" "$MEMBER_NAME"

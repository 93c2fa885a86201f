# Prints one hash of the files this member's etcd runs with (configuration, certificates, unit, binary).
# With a path (the unit's ExecStartPre), also records it there: what the starting etcd runs with. The
# member step compares the two to decide a restart from the host's state, not from what a run wrote.
# Parameters: RUN_FILES.
files_hash=$(sha256sum "${RUN_FILES[@]}" | sha256sum | cut -d' ' -f1)
if [ "$#" -gt 0 ]; then
  printf '%s\n' "$files_hash" >"$1"
fi
printf '%s\n' "$files_hash"

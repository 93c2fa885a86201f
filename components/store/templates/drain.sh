# preStop: flush memtables and stop taking writes, so the next start replays no commit log.
# The pod's termination grace period is DRAIN_TIMEOUT plus a margin, so this always gets its full time.
echo "draining $(hostname) (at most ${DRAIN_TIMEOUT}s)"
if ! timeout "${DRAIN_TIMEOUT}" nodetool drain; then
  echo "nodetool drain did not finish within ${DRAIN_TIMEOUT}s; the commit log will be replayed at start" >&2
fi

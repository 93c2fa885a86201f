# What the node step and its delete share, after kubernetes/common.sh: the secret bundle on stdin, and the
# drain. Parameters: NODE_NAME, SECRET_FILES, CA_FILES, TRANSIENT_FILES, DRAIN_TIMEOUT.
umask 0077
STAGING=$(mktemp -d)
trap 'rm -rf "$STAGING"' EXIT

# receive_files: stdin's `==> NAME <==` blocks into STAGING; every expected file must be there.
receive_files() {
  local name
  awk -v dir="$STAGING" '/^==> [A-Za-z0-9._-]+ <==$/ { name = $2; printf "" > (dir "/" name); next }
    name != "" { print > (dir "/" name) }'
  for name in "${SECRET_FILES[@]}" "${CA_FILES[@]}" "${TRANSIENT_FILES[@]}"; do
    [ -s "$STAGING/$name" ] || fail "$NODE_NAME: expected '$name' on stdin"
  done
}

# node_registered: 0 when the Node object exists, 1 when the API says it does not; fails on any other answer.
node_registered() {
  local answer
  if answer=$(kube get node "$NODE_NAME" -o jsonpath='{.metadata.name}' 2>&1); then
    return 0
  fi
  grep -q NotFound <<<"$answer" && return 1
  fail "$NODE_NAME: cannot read its Node object: $answer"
}

# drain WHY LEFT [MARKER]: cordons and drains the node, honouring PodDisruptionBudgets (kubectl drain evicts),
# within DRAIN_TIMEOUT. When it cannot finish it uncordons the node again (and removes MARKER, the file that
# says a run cordoned it), then fails naming the pod that could not be evicted; LEFT says what the node is
# left as. Returns once drained; the node stays cordoned.
drain() {
  local why=$1 left=$2 marker=${3:-} log="$STAGING/drain.log" pod
  [ -z "$marker" ] || : >"$marker"
  kube cordon "$NODE_NAME" >/dev/null
  changed "cordoned $NODE_NAME for $why"
  if ! kube drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --timeout="${DRAIN_TIMEOUT}s" >"$log" 2>&1; then
    # kubectl: `error when evicting pods/"NAME" -n "NAMESPACE" ...` for each refused eviction.
    pod=$(sed -n 's/.*error when evicting pods\/"\([^"]*\)" -n "\([^"]*\)".*/\2\/\1/p' "$log" | tail -n 1)
    if kube uncordon "$NODE_NAME" >/dev/null 2>&1 && [ -n "$marker" ]; then
      rm -f "$marker"
    fi
    if [ -n "$pod" ]; then
      fail "$NODE_NAME: draining for $why did not finish within ${DRAIN_TIMEOUT}s: pod $pod cannot be evicted" \
        "(its PodDisruptionBudget allows no disruption now). $NODE_NAME was uncordoned and $left. Let the pod's" \
        "budget allow a disruption (or raise kubernetes.drain_timeout), then run again"
    fi
    fail "$NODE_NAME: draining for $why failed: $(tail -n 5 "$log" | tr '\n' ' ')"
  fi
  changed "drained $NODE_NAME"
}

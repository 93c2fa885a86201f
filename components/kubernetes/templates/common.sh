# Helpers of the Kubernetes (k3s) steps, after shared/common.sh (changed, warn, wait_until).
# Parameters: K3S_BIN; KUBECONFIG_FILE is set by the step (the server's own admin kubeconfig, or on an agent
# a private copy of the cluster's admin kubeconfig received on stdin).

fail() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# kube ARGS...: k3s's bundled kubectl with this step's kubeconfig.
kube() {
  "$K3S_BIN" kubectl --kubeconfig="$KUBECONFIG_FILE" --request-timeout=10s "$@"
}

api_ready() {
  [ "$(kube get --raw=/readyz)" = ok ]
}

# ready_condition NODE: "STATUS LAST_HEARTBEAT" of the node's Ready condition.
ready_condition() {
  kube get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}'
}

# node_ready NODE [SINCE]: the node is Ready, and (with SINCE, an RFC 3339 UTC time) its kubelet reported so
# at or after SINCE: a status from before a restart does not count.
node_ready() {
  local status heartbeat
  read -r status heartbeat <<<"$(ready_condition "$1")" || return 1
  [ "$status" = True ] || return 1
  [ -z "${2:-}" ] || [[ ! "$heartbeat" < "$2" ]]
}

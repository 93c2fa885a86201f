# kubernetes_worker_gate (a node health gate, see components/nodes/gates.py) of a worker-only node (a k3s agent):
# passes when the node is Ready with a status its kubelet reported since this boot, so the next node of the
# one-at-a-time reboot chain goes down only once this one is back. Asked with the node's own kubelet credentials
# (k3s's agent kubeconfig, user system:node:<name>), which Kubernetes' Node authorizer lets read this node's own
# Node object (and not evict pods: so no drain before the reboot, see the README). A node where no k3s agent is
# enabled or running yet has nothing to wait for. Only reads.
# Parameters: KUBERNETES_WORKER_GATE_NODE, KUBERNETES_WORKER_GATE_KUBECONFIG.
kubernetes_worker_gate() {
  local k3s="" dir booted status="" heartbeat=""
  for dir in /usr/local/bin /opt/bin; do
    if [ -x "$dir/k3s" ]; then
      k3s=$dir/k3s
      break
    fi
  done
  if [ -z "$k3s" ] || { ! systemctl is-enabled --quiet k3s-agent 2>/dev/null && ! systemctl is-active --quiet k3s-agent 2>/dev/null; }; then
    printf 'no k3s agent on this host: nothing to wait for\n'
    return 0
  fi
  if [ ! -s "$KUBERNETES_WORKER_GATE_KUBECONFIG" ]; then
    printf 'waiting for k3s to write %s\n' "$KUBERNETES_WORKER_GATE_KUBECONFIG"
    return 1
  fi
  read -r status heartbeat <<<"$("$k3s" kubectl --kubeconfig="$KUBERNETES_WORKER_GATE_KUBECONFIG" \
    --request-timeout=5s get node "$KUBERNETES_WORKER_GATE_NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' \
    2>/dev/null)" || true
  booted=$(date -u -d "@$(($(date +%s) - $(cut -d. -f1 /proc/uptime)))" +%Y-%m-%dT%H:%M:%SZ)
  if [ "$status" != True ] || [[ "$heartbeat" < "$booted" ]]; then
    printf 'waiting for node %s to be Ready since this boot (%s; Ready=%s at %s)\n' \
      "$KUBERNETES_WORKER_GATE_NODE" "$booted" "${status:-unknown}" "${heartbeat:-never}"
    return 1
  fi
  printf 'node %s Ready since this boot\n' "$KUBERNETES_WORKER_GATE_NODE"
}

# kubernetes_control_plane_gate (a node health gate, see components/nodes/gates.py): passes when taking this
# control-plane node down (a reboot) cannot leave the cluster without its API: this node's k3s API answers
# /readyz and the node is Ready, with a status its kubelet reported since this boot (after a reboot, the
# status from before it does not count). Asked through the node's own admin kubeconfig. A node where no k3s
# server is enabled or running yet has nothing to wait for. Only reads.
# Parameters: KUBERNETES_GATE_NODE, KUBERNETES_GATE_KUBECONFIG.
kubernetes_control_plane_gate() {
  local k3s="" dir booted status="" heartbeat=""
  for dir in /usr/local/bin /opt/bin; do
    if [ -x "$dir/k3s" ]; then
      k3s=$dir/k3s
      break
    fi
  done
  if [ -z "$k3s" ] || { ! systemctl is-enabled --quiet k3s 2>/dev/null && ! systemctl is-active --quiet k3s 2>/dev/null; }; then
    printf 'no k3s server on this host: nothing to wait for\n'
    return 0
  fi
  if [ ! -s "$KUBERNETES_GATE_KUBECONFIG" ]; then
    printf 'waiting for k3s to write %s\n' "$KUBERNETES_GATE_KUBECONFIG"
    return 1
  fi
  if [ "$("$k3s" kubectl --kubeconfig="$KUBERNETES_GATE_KUBECONFIG" --request-timeout=5s get --raw=/readyz 2>&1)" != ok ]; then
    printf 'waiting for the k3s API on this host to answer /readyz\n'
    return 1
  fi
  read -r status heartbeat <<<"$("$k3s" kubectl --kubeconfig="$KUBERNETES_GATE_KUBECONFIG" --request-timeout=5s \
    get node "$KUBERNETES_GATE_NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' \
    2>/dev/null)" || true
  booted=$(date -u -d "@$(($(date +%s) - $(cut -d. -f1 /proc/uptime)))" +%Y-%m-%dT%H:%M:%SZ)
  if [ "$status" != True ] || [[ "$heartbeat" < "$booted" ]]; then
    printf 'waiting for node %s to be Ready since this boot (%s; Ready=%s at %s)\n' \
      "$KUBERNETES_GATE_NODE" "$booted" "${status:-unknown}" "${heartbeat:-never}"
    return 1
  fi
  printf 'k3s API ready and node %s Ready\n' "$KUBERNETES_GATE_NODE"
}

# kubernetes_control_plane_gate (a node health gate, see components/nodes/gates.py): passes when taking this
# control-plane node down (a reboot) cannot leave the cluster without its API, and (after the reboot) once the
# node is back: the API answers /readyz (this server's, or another server's while this one is down), this node
# is Ready with a status its kubelet reported since this boot (a status from before the reboot does not count),
# and every other configured server that has registered a Node is Ready (one that has not registered yet, e.g.
# added in this very run, is not part of the cluster yet). Asked with this server's admin kubeconfig; another
# server's API through `--server` (every server's serving certificate comes from the cluster's one server CA,
# with its address among the names). A node where no k3s server is enabled or running yet has nothing to wait
# for. Only reads.
# Parameters: KUBERNETES_GATE_NODE, KUBERNETES_GATE_KUBECONFIG, KUBERNETES_GATE_SERVERS (the other servers'
# node names) and KUBERNETES_GATE_APIS (their API URLs, in the same order).
kubernetes_control_plane_gate() {
  local k3s="" dir url booted listing name status heartbeat api_found=0 not_ready=()
  local api=()
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
  for url in "" "${KUBERNETES_GATE_APIS[@]}"; do
    api=(--kubeconfig="$KUBERNETES_GATE_KUBECONFIG" --request-timeout=5s)
    [ -z "$url" ] || api+=(--server="$url")
    if [ "$("$k3s" kubectl "${api[@]}" get --raw=/readyz 2>/dev/null)" = ok ]; then
      api_found=1
      break
    fi
  done
  if [ "$api_found" = 0 ]; then
    printf 'waiting for the k3s API to answer /readyz (on this host or %s)\n' "${KUBERNETES_GATE_APIS[*]:-no other server}"
    return 1
  fi
  listing=$("$k3s" kubectl "${api[@]}" get nodes -o \
    jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}{"\n"}{end}' \
    2>/dev/null) || listing=""
  read -r status heartbeat <<<"$(awk -v node="$KUBERNETES_GATE_NODE" '$1 == node { print $2, $3 }' <<<"$listing")" || true
  booted=$(date -u -d "@$(($(date +%s) - $(cut -d. -f1 /proc/uptime)))" +%Y-%m-%dT%H:%M:%SZ)
  if [ "${status:-}" != True ] || [[ "${heartbeat:-}" < "$booted" ]]; then
    printf 'waiting for node %s to be Ready since this boot (%s; Ready=%s at %s)\n' \
      "$KUBERNETES_GATE_NODE" "$booted" "${status:-unknown}" "${heartbeat:-never}"
    return 1
  fi
  for name in "${KUBERNETES_GATE_SERVERS[@]}"; do
    status=$(awk -v node="$name" '$1 == node { print $2 }' <<<"$listing")
    if [ -n "$status" ] && [ "$status" != True ]; then
      not_ready+=("$name (Ready=$status)")
    fi
  done
  if [ "${#not_ready[@]}" -gt 0 ]; then
    printf 'waiting for the other servers to be Ready: %s\n' "${not_ready[*]}"
    return 1
  fi
  printf 'k3s API ready, node %s Ready, other servers Ready: %s\n' "$KUBERNETES_GATE_NODE" \
    "${KUBERNETES_GATE_SERVERS[*]:-none}"
}

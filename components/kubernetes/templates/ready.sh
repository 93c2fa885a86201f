# The readiness gate: waits until this server's API answers /readyz and every configured node is Ready;
# changes nothing. Parameters: KUBECONFIG_FILE, EXPECTED_NODES, READY_TIMEOUT.
every_node_ready() {
  local listing node missing=()
  listing=$(kube get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"="}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
  for node in "${EXPECTED_NODES[@]}"; do
    grep -qx "$node=True" <<<"$listing" || missing+=("$node")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    printf 'not Ready: %s\n' "${missing[*]}"
    return 1
  fi
}

wait_until "$READY_TIMEOUT" "the API to answer /readyz" api_ready
wait_until "$READY_TIMEOUT" "every node to be Ready (${EXPECTED_NODES[*]})" every_node_ready
printf 'ready: %s nodes: %s\n' "${#EXPECTED_NODES[@]}" "${EXPECTED_NODES[*]}"

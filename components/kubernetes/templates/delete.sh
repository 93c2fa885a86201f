# The node step's `delete`: takes the node out of the cluster when it leaves the stack (or the cluster is
# destroyed). pulumi-command runs it with the step's last inputs, stdin included. In order: cordon and drain
# (PodDisruptionBudgets honoured, within DRAIN_TIMEOUT; a pod that cannot be evicted fails the run naming it, and
# the node is uncordoned and left as it was), stop and disable k3s, delete the Node object, remove what the
# step wrote (secrets, config, unit, records). The k3s binary, the airgap images and k3s's data in
# /var/lib/rancher stay (k3s's own k3s-uninstall.sh removes those). A server goes through its own API, deleting
# its Node right before it stops (a running kubelet does not register again); an agent stops first, then
# goes through the cluster's API with the admin kubeconfig it received on stdin. Safe to run again after an
# interruption: each part reads the host first. A node that now runs k3s's other service (its roles changed,
# and the engine deletes the old role's step after the new one ran) keeps everything.
# Parameters: NODE_NAME, ROLE, SERVICE, OTHER_SERVICE, CONFIG_FILE, SECRETS_DIR, SECRET_FILES, CA_FILES,
# TRANSIENT_FILES, STATE_DIR, ADMIN_KUBECONFIG, READY_TIMEOUT, DRAIN_TIMEOUT.
UNIT_FILE=/etc/systemd/system/$SERVICE.service
K3S_BIN=
for dir in /usr/local/bin /opt/bin; do
  if [ -x "$dir/k3s" ]; then
    K3S_BIN=$dir/k3s
    break
  fi
done
KUBECONFIG_FILE=$ADMIN_KUBECONFIG

service_active() {
  systemctl is-active --quiet "$SERVICE" 2>/dev/null
}

stop_service() {
  if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null || service_active; then
    systemctl disable --now --quiet "$SERVICE"
    changed "stopped and disabled $SERVICE"
  fi
}

delete_node_object() {
  kube delete node "$NODE_NAME" >/dev/null
  changed "deleted the Node object $NODE_NAME"
}

leave_as_server() {
  if ! service_active; then
    warn "$NODE_NAME: k3s is not running, so its Node object cannot be deleted through it; if it still exists," \
      "delete it from another server: kubectl delete node $NODE_NAME"
    return 0
  fi
  wait_until "$READY_TIMEOUT" "the API on $NODE_NAME to answer /readyz" api_ready
  if node_registered; then
    drain "its removal from the cluster" "is still in the cluster"
    delete_node_object
  fi
  stop_service
}

leave_as_agent() {
  KUBECONFIG_FILE=$STAGING/admin.kubeconfig
  if node_registered; then
    if service_active; then
      drain "its removal from the cluster" "is still in the cluster"
    fi
    stop_service
    delete_node_object
  fi
}

remove_files() {
  local file
  if [ -f "$UNIT_FILE" ]; then
    rm -f "$UNIT_FILE"
    systemctl daemon-reload
    changed "removed $UNIT_FILE"
  fi
  for file in "$CONFIG_FILE" "$SECRETS_DIR" "$STATE_DIR/$SERVICE.started" "$STATE_DIR/$SERVICE.cordoned" \
    "$STATE_DIR/cluster-settings"; do
    if [ -e "$file" ]; then
      rm -rf "$file"
      changed "removed $file"
    fi
  done
}

receive_files
if systemctl is-enabled --quiet "$OTHER_SERVICE" 2>/dev/null || systemctl is-active --quiet "$OTHER_SERVICE" 2>/dev/null; then
  printf '%s runs %s now (its roles changed): nothing of its %s to undo\n' "$NODE_NAME" "$OTHER_SERVICE" "$SERVICE"
  exit 0
fi
if [ -n "$K3S_BIN" ]; then
  if [ "$ROLE" = server ]; then
    leave_as_server
  else
    leave_as_agent
  fi
fi
stop_service
remove_files
printf '%s left the cluster\n' "$NODE_NAME"

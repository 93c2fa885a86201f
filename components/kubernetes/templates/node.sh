# Configures k3s on one node and (re)starts it only when what it last started with differs. The steps of
# all nodes are chained (servers first, then agents), so restarts and upgrades go one node at a time, each
# waiting until its node is Ready again. A version change cordons and drains the node first and uncordons
# it once it is Ready. Safe to re-run at any point: the decision comes from the host's state (a stamp of the
# version and configuration k3s last started with), never from what this run wrote.
# stdin: `==> NAME <==` blocks: SECRET_FILES (installed 0600 in SECRETS_DIR) and TRANSIENT_FILES (on agents
# the cluster's admin kubeconfig, kept in a private temporary directory until the step ends).
# Parameters: NODE_NAME, ROLE, SERVICE, OTHER_SERVICE, CONFIG_FILE, CONFIG_CONTENT, UNIT_CONTENT, SECRETS_DIR,
# SECRET_FILES, TRANSIENT_FILES, STATE_DIR, ADMIN_KUBECONFIG, IMAGES_SHA256, NEEDS_WIREGUARD, READY_TIMEOUT,
# DRAIN_TIMEOUT.
umask 0077
STAGING=$(mktemp -d)
trap 'rm -rf "$STAGING"' EXIT
UNIT_FILE=/etc/systemd/system/$SERVICE.service
STAMP=$STATE_DIR/$SERVICE.started
CORDONED=$STATE_DIR/$SERVICE.cordoned
KUBECONFIG_FILE=$ADMIN_KUBECONFIG

memory_cgroup_enabled() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    grep -qw memory /sys/fs/cgroup/cgroup.controllers
  else
    [ "$(awk '$1 == "memory" { print $4 }' /proc/cgroups 2>/dev/null)" = 1 ]
  fi
}

wireguard_available() {
  [ -d /sys/module/wireguard ] || modinfo wireguard >/dev/null 2>&1
}

# check_node: what k3s cannot run without, checked before anything is installed or started.
check_node() {
  if ! memory_cgroup_enabled; then
    fail "$NODE_NAME: the memory cgroup is off and k3s cannot start without it. Fix: add" \
      "'cgroup_memory=1 cgroup_enable=memory' to the kernel command line (/boot/firmware/cmdline.txt on" \
      "Raspberry Pi OS; nodes of kind pi get it from the node recipe) and reboot the node"
  fi
  if [ "$NEEDS_WIREGUARD" = 1 ] && ! wireguard_available; then
    fail "$NODE_NAME: kubernetes.flannel.backend is wireguard-native but this kernel has no WireGuard" \
      "module. Fix: install the kernel's WireGuard module (Linux 5.6+ has it built in) or choose vxlan"
  fi
}

receive_files() {
  local name
  awk -v dir="$STAGING" '/^==> [A-Za-z0-9._-]+ <==$/ { name = $2; printf "" > (dir "/" name); next }
    name != "" { print > (dir "/" name) }'
  for name in "${SECRET_FILES[@]}" "${TRANSIENT_FILES[@]}"; do
    [ -s "$STAGING/$name" ] || fail "$NODE_NAME: expected '$name' on stdin"
  done
}

is_secret_file() {
  local name
  for name in "${SECRET_FILES[@]}"; do
    [ "$name" = "$1" ] && return 0
  done
  return 1
}

write_files() {
  local name file
  install -d -m 0700 "$SECRETS_DIR" "$STATE_DIR"
  install -d -m 0755 "$(dirname "$CONFIG_FILE")"
  for name in "${SECRET_FILES[@]}"; do
    install_file "$SECRETS_DIR/$name" 0600 <"$STAGING/$name"
  done
  for file in "$SECRETS_DIR"/*; do  # files of an earlier role (a worker keeps no datastore key)
    if [ -f "$file" ] && ! is_secret_file "${file##*/}"; then
      rm -f "$file"
      changed "removed $file"
    fi
  done
  install_file "$CONFIG_FILE" 0600 <<<"$CONFIG_CONTENT"
  install_file "$UNIT_FILE" 0644 <<<"$UNIT_CONTENT"
  # Also from systemd's view: a run interrupted after writing the unit still reloads it next time.
  if [ "$FILE_CHANGED" = 1 ] || [ "$(systemctl show -p NeedDaemonReload --value "$SERVICE")" = yes ]; then
    systemctl daemon-reload
  fi
  if [ "$ROLE" = agent ]; then
    KUBECONFIG_FILE=$STAGING/admin.kubeconfig
  fi
}

retire_other_service() {
  if systemctl is-enabled --quiet "$OTHER_SERVICE" 2>/dev/null || systemctl is-active --quiet "$OTHER_SERVICE"; then
    systemctl disable --now --quiet "$OTHER_SERVICE"
    changed "stopped and disabled $OTHER_SERVICE (the node's role changed)"
  fi
}

# desired_state: a hash of everything k3s reads at start: unit, config, secret files, airgap images.
desired_state() {
  {
    printf '%s\n' "$UNIT_CONTENT" "$CONFIG_CONTENT" "$IMAGES_SHA256"
    cat "${SECRET_FILES[@]/#/$SECRETS_DIR/}"
  } | sha256sum | cut -d' ' -f1
}

STARTED_VERSION=
STARTED_STATE=
read_stamp() {
  if [ -f "$STAMP" ]; then
    STARTED_VERSION=$(sed -n 's/^version=//p' "$STAMP")
    STARTED_STATE=$(sed -n 's/^state=//p' "$STAMP")
  fi
}

# drain_node FROM TO: cordon and drain before an upgrade, honouring PodDisruptionBudgets. The marker is
# written first, so a run interrupted anywhere after the cordon still uncordons the node next time.
drain_node() {
  local log="$STAGING/drain.log" pod
  : >"$CORDONED"
  kube cordon "$NODE_NAME" >/dev/null
  changed "cordoned $NODE_NAME for the upgrade from $1 to $2"
  if ! kube drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --timeout="${DRAIN_TIMEOUT}s" >"$log" 2>&1; then
    # kubectl: `error when evicting pods/"NAME" -n "NAMESPACE" ...` for each refused eviction.
    pod=$(sed -n 's/.*error when evicting pods\/"\([^"]*\)" -n "\([^"]*\)".*/\2\/\1/p' "$log" | tail -n 1)
    if kube uncordon "$NODE_NAME" >/dev/null 2>&1; then
      rm -f "$CORDONED"
    fi
    if [ -n "$pod" ]; then
      fail "$NODE_NAME: draining for the upgrade to $2 did not finish within ${DRAIN_TIMEOUT}s: pod $pod" \
        "cannot be evicted (its PodDisruptionBudget allows no disruption now). $NODE_NAME was uncordoned and" \
        "still runs $1. Let the pod's budget allow a disruption (or raise kubernetes.drain_timeout), then run again"
    fi
    fail "$NODE_NAME: draining for the upgrade to $2 failed: $(tail -n 5 "$log" | tr '\n' ' ')"
  fi
  changed "drained $NODE_NAME"
}

uncordon_if_drained() {
  if [ -f "$CORDONED" ]; then
    kube uncordon "$NODE_NAME" >/dev/null
    rm -f "$CORDONED"
    changed "uncordoned $NODE_NAME"
  fi
}

# await_ready [SINCE]: the service runs, a server's API answers /readyz, and the node is Ready (reported at
# or after SINCE when given).
await_ready() {
  wait_until "$READY_TIMEOUT" "$SERVICE on $NODE_NAME to be running" systemctl is-active --quiet "$SERVICE"
  if [ "$ROLE" = server ]; then
    wait_until "$READY_TIMEOUT" "k3s on $NODE_NAME to write $ADMIN_KUBECONFIG" test -s "$ADMIN_KUBECONFIG"
    wait_until "$READY_TIMEOUT" "the API on $NODE_NAME to answer /readyz" api_ready
  fi
  wait_until "$READY_TIMEOUT" "node $NODE_NAME to be Ready" node_ready "$NODE_NAME" "${1:-}"
}

roll() {
  local version state since
  version=$(installed_version)
  state=$(desired_state)
  read_stamp
  if systemctl is-active --quiet "$SERVICE" && [ "$STARTED_VERSION" = "$version" ] && [ "$STARTED_STATE" = "$state" ]; then
    await_ready
  else
    if systemctl is-active --quiet "$SERVICE" && [ -n "$STARTED_VERSION" ] && [ "$STARTED_VERSION" != "$version" ]; then
      drain_node "$STARTED_VERSION" "$version"
    fi
    if ! systemctl is-enabled --quiet "$SERVICE"; then
      systemctl enable --quiet "$SERVICE"
      changed "enabled $SERVICE"
    fi
    since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    if systemctl is-active --quiet "$SERVICE"; then
      systemctl restart --no-block "$SERVICE"
      changed "restarted $SERVICE ($version)"
    else
      systemctl start --no-block "$SERVICE"
      changed "started $SERVICE ($version)"
    fi
    await_ready "$since"
  fi
  uncordon_if_drained
  install_file "$STAMP" 0600 < <(printf 'version=%s\nstate=%s\n' "$version" "$state")
  if [ "$ROLE" = server ]; then
    printf 'kubeconfig-sha256=%s\n' "$(sha256sum <"$ADMIN_KUBECONFIG" | cut -d' ' -f1)"
  fi
}

check_node
receive_files
install_k3s
write_files
retire_other_service
roll

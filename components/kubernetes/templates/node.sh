# Configures k3s on one node and (re)starts it only when what it last started with differs. The steps of
# all nodes are chained (servers first, then agents), so restarts and upgrades go one node at a time, each
# waiting until its node is Ready again. A version change cordons and drains the node first and uncordons
# it once it is Ready. Safe to re-run at any point: the decision comes from the host's state (a stamp of the
# version and configuration k3s last started with), never from what this run wrote.
# stdin (kubernetes/steps.sh): SECRET_FILES (installed 0600 in SECRETS_DIR), CA_FILES (a server's cluster CAs,
# placed in TLS_DIR before k3s's first start) and TRANSIENT_FILES (on agents the cluster's admin kubeconfig,
# kept in a private temporary directory until the step ends).
# Parameters: NODE_NAME, ROLE, SERVICE, OTHER_SERVICE, CONFIG_FILE, CONFIG_CONTENT, UNIT_CONTENT, SECRETS_DIR,
# SECRET_FILES, CA_FILES, TLS_DIR, TRANSIENT_FILES, STATE_DIR, ADMIN_KUBECONFIG, IMAGES_SHA256, NEEDS_WIREGUARD,
# READY_TIMEOUT, DRAIN_TIMEOUT, IMMUTABLE_NAMES/IMMUTABLE_KEYS/IMMUTABLE_VALUES (server settings k3s cannot
# change once the cluster exists: config.yaml key, stack config key, wanted value), LABELS_WANTED,
# LABELS_UNWANTED, CONTROL_PLANE_TAINT, TAINTED, PRINT_KUBECONFIG_DIGEST.
UNIT_FILE=/etc/systemd/system/$SERVICE.service
STAMP=$STATE_DIR/$SERVICE.started
CORDONED=$STATE_DIR/$SERVICE.cordoned
SETTINGS_RECORD=$STATE_DIR/cluster-settings
KUBECONFIG_FILE=$ADMIN_KUBECONFIG

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

# check_cluster_ca: a server's CA files already on disk must be the stack's (kubernetes.ca: cookbook). k3s
# uses the CA files it finds at its first start and otherwise makes its own: a cluster created before this
# program placed its CAs has k3s's own, and replacing them would cut every node and client off.
check_cluster_ca() {
  local name differ=()
  for name in "${CA_FILES[@]}"; do
    if [ -f "$TLS_DIR/$name" ] && ! cmp -s "$STAGING/$name" "$TLS_DIR/$name"; then
      differ+=("$TLS_DIR/$name")
    fi
  done
  if [ "${#differ[@]}" -gt 0 ]; then
    fail "$NODE_NAME: this cluster's CA is not the one this stack made (kubernetes.ca is cookbook):" \
      "${differ[*]} differ. k3s made its own CA at its first start (a cluster created by an earlier version" \
      "of this program), and replacing it would cut off every node and client. Nothing was changed. Keep" \
      "k3s's CA: set kubernetes.ca to k3s (the kubeconfig output is then read from k3s's admin kubeconfig on the" \
      "first server, as before), or move to the stack's CA deliberately with \`k3s certificate rotate-ca\`" \
      "(https://docs.k3s.io/cli/certificate)"
  fi
}

place_cluster_ca() {
  local name
  [ "${#CA_FILES[@]}" -gt 0 ] || return 0
  install -d -m 0700 "$TLS_DIR"
  for name in "${CA_FILES[@]}"; do
    if [ ! -f "$TLS_DIR/$name" ]; then
      install -m 0600 "$STAGING/$name" "$TLS_DIR/$name"
      changed "placed the cluster's $name in $TLS_DIR"
    fi
  done
}

# recorded_setting NAME: the value recorded when k3s first started on this server.
recorded_setting() {
  sed -n "s/^$1=//p" "$SETTINGS_RECORD" | head -n 1
}

# check_immutable_settings: a server refuses settings that k3s cannot change once the cluster exists, with
# every offending key and the recorded value, before anything is written or restarted. A server that ran k3s
# before the record existed (an earlier version of this program) records what its current config.yaml says.
check_immutable_settings() {
  local index name value recorded problems=()
  [ "$ROLE" = server ] || return 0
  if [ ! -f "$SETTINGS_RECORD" ] && [ -f "$STAMP" ] && [ -f "$CONFIG_FILE" ]; then
    install -d -m 0700 "$STATE_DIR"
    for name in "${IMMUTABLE_NAMES[@]}"; do
      value=$(sed -n "s/^$name: //p" "$CONFIG_FILE" | head -n 1)
      value=${value#\'}
      printf '%s=%s\n' "$name" "${value%\'}"
    done >"$SETTINGS_RECORD.new"
    mv -f "$SETTINGS_RECORD.new" "$SETTINGS_RECORD"
    changed "recorded the settings k3s started with on $NODE_NAME in $SETTINGS_RECORD"
  fi
  [ -f "$SETTINGS_RECORD" ] || return 0
  for index in "${!IMMUTABLE_NAMES[@]}"; do
    recorded=$(recorded_setting "${IMMUTABLE_NAMES[$index]}")
    if [ -n "$recorded" ] && [ "$recorded" != "${IMMUTABLE_VALUES[$index]}" ]; then
      problems+=("${IMMUTABLE_KEYS[$index]} is ${IMMUTABLE_VALUES[$index]} but the cluster was created with $recorded")
    fi
  done
  if [ "${#problems[@]}" -gt 0 ]; then
    printf 'error: %s: k3s cannot change these settings of an existing cluster:\n' "$NODE_NAME" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    fail "Nothing was changed or restarted. Set them back to the recorded values (recorded in" \
      "$SETTINGS_RECORD on each server at k3s's first start); a new value needs a new cluster"
  fi
}

record_immutable_settings() {
  local index
  if [ "$ROLE" != server ] || [ -f "$SETTINGS_RECORD" ]; then
    return 0
  fi
  for index in "${!IMMUTABLE_NAMES[@]}"; do
    printf '%s=%s\n' "${IMMUTABLE_NAMES[$index]}" "${IMMUTABLE_VALUES[$index]}"
  done >"$SETTINGS_RECORD.new"
  mv -f "$SETTINGS_RECORD.new" "$SETTINGS_RECORD"
  changed "recorded the settings k3s first starts with in $SETTINGS_RECORD"
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
  place_cluster_ca
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

uncordon_if_drained() {
  if [ -f "$CORDONED" ]; then
    kube uncordon "$NODE_NAME" >/dev/null
    rm -f "$CORDONED"
    changed "uncordoned $NODE_NAME"
  fi
}

# reconcile_roles: the role labels and the control-plane taint as the node's roles say. k3s applies
# `node-taint` only when the node registers, and later starts only add labels, so a role change is applied
# here, through the API, once the node is Ready; only what differs is changed.
reconcile_roles() {
  local labels taints label
  labels=$(kube get node "$NODE_NAME" -o jsonpath='{.metadata.labels}')
  for label in "${LABELS_WANTED[@]}"; do
    if ! grep -qF "\"$label\":\"true\"" <<<"$labels"; then
      kube label node "$NODE_NAME" --overwrite "$label=true" >/dev/null
      changed "labelled node $NODE_NAME $label=true"
    fi
  done
  for label in "${LABELS_UNWANTED[@]}"; do
    if grep -qF "\"$label\":" <<<"$labels"; then
      kube label node "$NODE_NAME" "$label-" >/dev/null
      changed "removed label $label from node $NODE_NAME (the node's roles changed)"
    fi
  done
  taints=$(kube get node "$NODE_NAME" -o jsonpath='{range .spec.taints[*]}{.key}:{.effect}{"\n"}{end}')
  if [ "$TAINTED" = 1 ] && ! grep -qxF "$CONTROL_PLANE_TAINT" <<<"$taints"; then
    kube taint node "$NODE_NAME" "$CONTROL_PLANE_TAINT" >/dev/null
    changed "tainted node $NODE_NAME $CONTROL_PLANE_TAINT (control-plane only)"
  elif [ "$TAINTED" = 0 ] && grep -qxF "$CONTROL_PLANE_TAINT" <<<"$taints"; then
    kube taint node "$NODE_NAME" "$CONTROL_PLANE_TAINT-" >/dev/null
    changed "removed the taint $CONTROL_PLANE_TAINT from node $NODE_NAME (it runs workloads)"
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
      drain "the upgrade to $version" "still runs $STARTED_VERSION" "$CORDONED"
    fi
    if ! systemctl is-enabled --quiet "$SERVICE"; then
      systemctl enable --quiet "$SERVICE"
      changed "enabled $SERVICE"
    fi
    record_immutable_settings
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
  reconcile_roles
  uncordon_if_drained
  install_file "$STAMP" 0600 < <(printf 'version=%s\nstate=%s\n' "$version" "$state")
  if [ "$PRINT_KUBECONFIG_DIGEST" = 1 ]; then
    printf 'kubeconfig-sha256=%s\n' "$(sha256sum <"$ADMIN_KUBECONFIG" | cut -d' ' -f1)"
  fi
}

check_node
receive_files
check_cluster_ca
check_immutable_settings
install_k3s
write_files
retire_other_service
roll

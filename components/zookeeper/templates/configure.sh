# Configures one server and starts it, or restarts it when its configuration changed: a follower at once
# (one at a time: the steps run in a chain), the leader only in its second step, after every follower.
# Reads the super user's password on stdin (its digest goes into an argument file only the server reads).
# Parameters: SERVER_NAME, SERVER_ID, CONFIG_DIR, DATA_DIR, RUNTIME_DIR, STATIC_CONTENT, JVM_CONTENT,
# MEMBERSHIP_CONTENT (empty for a server that joins a running ensemble), UNIT_FILE, UNIT_CONTENT,
# START_PREPARE_FILE, START_PREPARE_SCRIPT.
UNITS_CHANGED=0

# super_digest WORD: what ZooKeeper's digest provider compares for user super, base64(sha1("super:WORD")).
super_digest() {
  local hex escaped="" index
  hex=$(printf 'super:%s' "$1" | sha1sum | cut -d' ' -f1)
  for ((index = 0; index < ${#hex}; index += 2)); do
    escaped+="\\x${hex:index:2}"
  done
  printf '%b' "$escaped" | base64
}

receive_super_digest() {
  local password
  IFS= read -r password || true
  if [ -z "$password" ]; then
    printf 'error: expected the super user password on stdin\n' >&2
    exit 1
  fi
  install_file "$CONFIG_DIR/jvm-secret.args" 0600 \
    <<<"-Dzookeeper.DigestAuthenticationProvider.superDigest=super:$(super_digest "$password")"
  chown zookeeper:zookeeper "$CONFIG_DIR/jvm-secret.args"
}

write_config() {
  install -d -m 0755 "$(dirname "$START_PREPARE_FILE")"
  install -d -m 0750 -o zookeeper -g zookeeper "$DATA_DIR" "$DATA_DIR/data" "$DATA_DIR/datalog"
  install_file "$CONFIG_DIR/zoo.cfg" 0644 <<<"$STATIC_CONTENT"
  install_file "$CONFIG_DIR/jvm.args" 0644 <<<"$JVM_CONTENT"
  if [ -n "$MEMBERSHIP_CONTENT" ]; then
    # Read only before the server's first start: ZooKeeper keeps its membership in RUNTIME_DIR afterwards.
    install_file "$CONFIG_DIR/membership-$SERVER_NAME.dynamic" 0644 <<<"$MEMBERSHIP_CONTENT"
  fi
  install_file "$DATA_DIR/data/myid" 0644 <<<"$SERVER_ID"
  install_file "$START_PREPARE_FILE" 0755 <<<"$START_PREPARE_SCRIPT"
  install_file "$UNIT_FILE" 0644 <<<"$UNIT_CONTENT"
  UNITS_CHANGED=$FILE_CHANGED
}

has_membership() {
  [ -f "$RUNTIME_DIR/zoo.cfg" ] || [ -f "$CONFIG_DIR/membership-$SERVER_NAME.dynamic" ]
}

manage_service() {
  # Also when systemd says so: a run killed between writing the unit and this reload reloads next time.
  if [ "$UNITS_CHANGED" -eq 1 ] || [ "$(systemctl show -p NeedDaemonReload --value "$SERVICE")" = yes ]; then
    systemctl daemon-reload
  fi
  if ! has_membership; then
    printf '%s is not a member yet: its join step adds it\n' "$SERVER_NAME"
  elif ! systemctl is-enabled --quiet "$SERVICE"; then
    systemctl enable --quiet "$SERVICE"
    changed "enabled $SERVICE"
  fi
  if has_membership && ! systemctl is-active --quiet "$SERVICE"; then
    # A new ensemble serves only once a quorum of its servers runs: do not wait here.
    systemctl start --no-block "$SERVICE"
    changed "started $SERVICE"
  elif restart_needed; then
    read_peers
    if [ "${#PEER_ENDPOINTS[@]}" -gt 0 ] && is_leader; then
      printf 'restart deferred: %s leads the ensemble; it restarts after the followers\n' "$SERVER_NAME"
    else
      restart_server
    fi
  fi
  printf 'configuration %s\n' "$(config_hash)"
}

receive_super_digest
write_config
manage_service

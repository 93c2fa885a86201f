# Installs and configures one member, then starts it when it has a membership file.
# stdin: the CA certificate, the member certificate and the member key, as three PEM blocks.
# Parameters: MEMBER_NAME, CONFIG_DIR, DATA_ROOT, SERVICE, SNAPSHOT_UNIT, ENV_CONTENT, MEMBERSHIP_CONTENT
# (empty for a member that joins later), UNIT_CONTENT, SNAPSHOT_SCRIPT, SNAPSHOT_SERVICE_CONTENT,
# SNAPSHOT_TIMER_CONTENT, LOCAL_CLIENT_URL, HEALTH_TIMEOUT.
RESTART_NEEDED=0
UNITS_CHANGED=0

receive_pki() {
  local staging part file
  staging=$(mktemp -d)
  awk -v dir="$staging" '/^-----BEGIN /{n++} n{print > (dir "/part" n)}'
  for part in 1 2 3; do
    if [ ! -s "$staging/part$part" ]; then
      rm -rf "$staging"
      printf 'error: expected 3 PEM blocks on stdin (CA, certificate, key)\n' >&2
      exit 1
    fi
  done
  install -d -m 0700 -o etcd -g etcd "$PKI_DIR"
  part=1
  for file in ca.crt member.crt member.key; do
    install_file "$PKI_DIR/$file" 0600 <"$staging/part$part"
    RESTART_NEEDED=$((RESTART_NEEDED | FILE_CHANGED))
    chown etcd:etcd "$PKI_DIR/$file"
    part=$((part + 1))
  done
  rm -rf "$staging"
}

# hand_off_leadership: when this member leads, makes another started voting member the leader first
# (`etcdctl move-leader`), so a planned restart costs the cluster no election timeout. Best effort.
hand_off_leadership() {
  local status target
  status=$(etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" endpoint status -w simple 2>/dev/null) || return 0
  # simple output: endpoint, ID, version, db size, is leader, is learner, raft term, index, applied, errors
  [ "$(cut -d, -f5 <<<"$status" | tr -d ' ')" = true ] || return 0
  target=$(etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" endpoint status --cluster -w simple 2>/dev/null |
    awk -F', ' '$5 == "false" && $6 == "false" { print $2; exit }') || true
  if [ -n "$target" ] && etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" move-leader "$target" >/dev/null 2>&1; then
    changed "leadership moved to $target before the restart"
  fi
}

write_config() {
  install -d -m 0755 "$CONFIG_DIR" /usr/local/lib/cookbook-etcd
  install -d -m 0700 -o etcd -g etcd "$DATA_ROOT"
  install_file "$CONFIG_DIR/etcd.env" 0644 <<<"$ENV_CONTENT"
  RESTART_NEEDED=$((RESTART_NEEDED | FILE_CHANGED))
  if [ -n "$MEMBERSHIP_CONTENT" ]; then
    # Read by etcd only when it first creates its data dir: no restart when it changes.
    install_file "$CONFIG_DIR/membership-$MEMBER_NAME.env" 0644 <<<"$MEMBERSHIP_CONTENT"
  fi
  install_file /usr/local/lib/cookbook-etcd/snapshot 0755 <<<"$SNAPSHOT_SCRIPT"
  install_file "/etc/systemd/system/$SERVICE.service" 0644 <<<"$UNIT_CONTENT"
  UNITS_CHANGED=$((UNITS_CHANGED | FILE_CHANGED))
  RESTART_NEEDED=$((RESTART_NEEDED | FILE_CHANGED))
  install_file "/etc/systemd/system/$SNAPSHOT_UNIT.service" 0644 <<<"$SNAPSHOT_SERVICE_CONTENT"
  UNITS_CHANGED=$((UNITS_CHANGED | FILE_CHANGED))
  install_file "/etc/systemd/system/$SNAPSHOT_UNIT.timer" 0644 <<<"$SNAPSHOT_TIMER_CONTENT"
  UNITS_CHANGED=$((UNITS_CHANGED | FILE_CHANGED))
}

retire_package_service() {
  # The distribution's etcd.service runs a single-member default cluster; ours replaces it.
  if [ -n "$(systemctl list-unit-files --no-legend etcd.service 2>/dev/null)" ] \
    && [ "$(systemctl is-enabled etcd.service 2>/dev/null || true)" != masked ]; then
    systemctl disable --now etcd.service >/dev/null 2>&1 || true
    systemctl mask etcd.service >/dev/null 2>&1
    changed "masked the distribution's etcd.service"
  fi
}

local_health() {
  etcdctl_as_member --endpoints="$LOCAL_CLIENT_URL" endpoint health
}

manage_services() {
  if [ "$UNITS_CHANGED" -eq 1 ]; then
    systemctl daemon-reload
  fi
  if ! systemctl is-enabled --quiet "$SNAPSHOT_UNIT.timer"; then
    systemctl enable --quiet "$SNAPSHOT_UNIT.timer"
    changed "enabled $SNAPSHOT_UNIT.timer"
  fi
  if ! systemctl is-active --quiet "$SNAPSHOT_UNIT.timer"; then
    systemctl start "$SNAPSHOT_UNIT.timer"
    changed "started $SNAPSHOT_UNIT.timer"
  fi
  if [ ! -f "$CONFIG_DIR/membership-$MEMBER_NAME.env" ]; then
    printf '%s is not a member yet: its join step adds it\n' "$MEMBER_NAME"
    return 0
  fi
  if ! start_service && [ "$RESTART_NEEDED" -eq 1 ]; then
    hand_off_leadership
    systemctl restart "$SERVICE"
    wait_until "$HEALTH_TIMEOUT" "$MEMBER_NAME to be healthy after its restart" local_health
    changed "restarted $SERVICE"
  fi
}

install_etcd
receive_pki
write_config
retire_package_service
manage_services

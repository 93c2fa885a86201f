# Installs and configures one member; starts it once it is a member, and restarts it (one member at a time,
# behind a quorum gate) when the files it runs with differ from the ones it started with. The decision is
# read from the host, so a run interrupted after writing a file still restarts the member next time.
# stdin: the member certificate, the member key, then the trusted CA certificates (one or more PEM blocks).
# Parameters: MEMBER_NAME, CONFIG_DIR, DATA_ROOT, SERVICE, SNAPSHOT_UNIT, GO_ARCH, ENV_CONTENT,
# MEMBERSHIP_CONTENT (empty for a member that joins later), UNIT_CONTENT, SNAPSHOT_SCRIPT,
# CONFIG_HASH_SCRIPT, CONFIG_HASH_PATH, STARTED_RECORD, SNAPSHOT_SERVICE_CONTENT, SNAPSHOT_TIMER_CONTENT,
# LOCAL_CLIENT_URL, HEALTH_TIMEOUT.
UNITS_CHANGED=0

# receive_pki: the certificate, key and CA bundle go into a new directory named after their content, and the
# `pki` symlink switches to it in one rename: etcd reloads its certificate and key on every handshake, so
# renaming the files one by one would let a handshake pair a new certificate with the old key.
receive_pki() {
  local staging count part digest target
  staging=$(mktemp -d)
  awk -v dir="$staging" '/^-----BEGIN /{n++} n{print > (dir "/part" n)}'
  count=$(find "$staging" -name 'part*' | wc -l)
  if [ "$count" -lt 3 ] || ! grep -q '^-----BEGIN CERTIFICATE-----$' "$staging/part1" \
    || ! grep -q '^-----BEGIN .*PRIVATE KEY-----$' "$staging/part2"; then
    rm -rf "$staging"
    printf 'error: expected on stdin a certificate, its key, then one or more CA certificates\n' >&2
    exit 1
  fi
  for part in $(seq 3 "$count"); do
    cat "$staging/part$part"
  done >"$staging/bundle"
  digest=$(cat "$staging/part1" "$staging/part2" "$staging/bundle" | sha256sum | cut -c1-16)
  target="$PKI_DIR.$digest"
  if [ "$(readlink "$PKI_DIR" 2>/dev/null || true)" != "${target##*/}" ] || [ ! -s "$target/ca.crt" ]; then
    install -d -m 0700 -o etcd -g etcd "$target"
    install -m 0600 -o etcd -g etcd "$staging/part1" "$target/member.crt"
    install -m 0600 -o etcd -g etcd "$staging/part2" "$target/member.key"
    install -m 0600 -o etcd -g etcd "$staging/bundle" "$target/ca.crt"
    if [ -d "$PKI_DIR" ] && [ ! -L "$PKI_DIR" ]; then
      mv "$PKI_DIR" "$PKI_DIR.replaced"  # a plain directory, from an earlier version: once
    fi
    ln -sfn "${target##*/}" "$PKI_DIR.next"
    mv -T "$PKI_DIR.next" "$PKI_DIR"
    changed "certificates switched to $target"
    find "${PKI_DIR%/*}" -maxdepth 1 -name "${PKI_DIR##*/}.*" ! -name "${target##*/}" -exec rm -rf {} +
  fi
  rm -rf "$staging"
}

write_config() {
  install -d -m 0755 "$CONFIG_DIR" /usr/local/lib/cookbook-etcd
  install -d -m 0700 -o etcd -g etcd "$DATA_ROOT"
  install_file "$CONFIG_DIR/etcd.env" 0644 < <(etcd_env)
  if [ -n "$MEMBERSHIP_CONTENT" ]; then
    # Read by etcd only when it first creates its data dir: no restart when it changes.
    install_file "$CONFIG_DIR/membership-$MEMBER_NAME.env" 0644 <<<"$MEMBERSHIP_CONTENT"
  fi
  install_file /usr/local/lib/cookbook-etcd/snapshot 0755 <<<"$SNAPSHOT_SCRIPT"
  install_file "$CONFIG_HASH_PATH" 0755 <<<"$CONFIG_HASH_SCRIPT"
  install_file "/etc/systemd/system/$SERVICE.service" 0644 <<<"$UNIT_CONTENT"
  UNITS_CHANGED=$((UNITS_CHANGED | FILE_CHANGED))
  install_file "/etc/systemd/system/$SNAPSHOT_UNIT.service" 0644 <<<"$SNAPSHOT_SERVICE_CONTENT"
  UNITS_CHANGED=$((UNITS_CHANGED | FILE_CHANGED))
  install_file "/etc/systemd/system/$SNAPSHOT_UNIT.timer" 0644 <<<"$SNAPSHOT_TIMER_CONTENT"
  UNITS_CHANGED=$((UNITS_CHANGED | FILE_CHANGED))
}

# units_need_reload: systemd runs an older version of one of our unit files (e.g. a run was interrupted
# between writing a unit and `daemon-reload`).
units_need_reload() {
  local unit
  for unit in "$SERVICE.service" "$SNAPSHOT_UNIT.service" "$SNAPSHOT_UNIT.timer"; do
    if [ "$(systemctl show -p NeedDaemonReload --value "$unit")" = yes ]; then
      return 0
    fi
  done
  return 1
}

is_member() {
  [ -f "$CONFIG_DIR/membership-$MEMBER_NAME.env" ]
}

# has_joined: a bootstrap member, or a member whose join step finished.
has_joined() {
  [ -n "$MEMBERSHIP_CONTENT" ] || [ -f "$CONFIG_DIR/joined-$MEMBER_NAME" ]
}

manage_services() {
  local current started
  if [ "$UNITS_CHANGED" -eq 1 ] || units_need_reload; then
    systemctl daemon-reload
  fi
  if ! is_member; then
    printf '%s is not a member yet: its join step adds it\n' "$MEMBER_NAME"
    return 0
  fi
  if has_joined; then
    enable_snapshot_timer
  fi
  if start_service; then
    return 0
  fi
  current=$(bash "$CONFIG_HASH_PATH")
  started=$(started_with)
  if [ "$started" = "$current" ]; then
    return 0
  fi
  wait_until "$HEALTH_TIMEOUT" "the other members to hold a quorum without $MEMBER_NAME" quorum_without_me
  hand_off_leadership
  systemctl restart --no-block "$SERVICE"
  wait_until "$HEALTH_TIMEOUT" "$MEMBER_NAME to run again, healthy, with its current files" running_with "$current"
  changed "restarted $SERVICE: its files changed since it started (${started:0:12} -> ${current:0:12})"
}

install_etcd
receive_pki
write_config
keep_distribution_service_masked
manage_services

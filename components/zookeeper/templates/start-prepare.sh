# Runs as root before every start of the server (the unit's ExecStartPre). With dynamic reconfiguration on,
# ZooKeeper rewrites the file it was started with and writes its membership to new files beside it, so it
# owns RUNTIME_DIR: this writes its copy of the settings and points it at its newest membership file (the
# membership record only before its first start, or while the newest membership lacks this server: a server that
# joins adopts the committed membership before it is added, and could not start from it), then records the
# configuration it starts with.
# Parameters: SERVER_NAME, SERVER_ID, CONFIG_DIR, RUNTIME_DIR, STARTED_WITH, UNIT_FILE.
prepare_runtime_config() {
  local runtime="$RUNTIME_DIR/zoo.cfg" pointer=""
  install -d -m 0750 -o zookeeper -g zookeeper "$RUNTIME_DIR"
  if [ -f "$runtime" ]; then
    pointer=$(sed -n 's/^dynamicConfigFile=//p' "$runtime" | tail -n 1)
  fi
  if [ -z "$pointer" ] || [ ! -f "$pointer" ] || ! grep -q "^server\.$SERVER_ID=" "$pointer"; then
    pointer="$CONFIG_DIR/membership-$SERVER_NAME.dynamic"
  fi
  if [ ! -f "$pointer" ]; then
    printf 'error: %s is not a member yet (no %s): its join step adds it\n' "$SERVER_NAME" "$pointer" >&2
    exit 1
  fi
  { cat "$CONFIG_DIR/zoo.cfg"; printf 'dynamicConfigFile=%s\n' "$pointer"; } >"$runtime.tmp"
  chown zookeeper:zookeeper "$runtime.tmp"
  mv -f "$runtime.tmp" "$runtime"
  config_hash >"$STARTED_WITH"
}

prepare_runtime_config

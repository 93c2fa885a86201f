# zookeeper_gate (a node health gate, see components/nodes/gates.py): passes when taking this host down cannot
# cost the ZooKeeper ensemble its quorum. While this host's server is enabled or running, every member of the
# membership ZooKeeper itself keeps (its runtime configuration) must serve, one of them as the leader; a host
# whose server is not set up yet has nothing to wait for.
# Parameters: ZOOKEEPER_GATE_SERVICE, ZOOKEEPER_GATE_CONFIG (the server's runtime zoo.cfg).
zookeeper_gate_mode() {
  # shellcheck disable=SC2016  # the inner script expands its own positional parameters
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf srvr >&3 && cat <&3' zookeeper_gate "$1" "$2" 2>/dev/null |
    sed -n 's/^Mode: //p' || true
}

zookeeper_gate() {
  local pointer line spec host port mode members=0 serving=0 leaders=0 report=""
  if ! systemctl is-enabled --quiet "$ZOOKEEPER_GATE_SERVICE" 2>/dev/null \
    && ! systemctl is-active --quiet "$ZOOKEEPER_GATE_SERVICE" 2>/dev/null; then
    printf '%s is not set up on this host: nothing to wait for\n' "$ZOOKEEPER_GATE_SERVICE"
    return 0
  fi
  pointer=$(sed -n 's/^dynamicConfigFile=//p' "$ZOOKEEPER_GATE_CONFIG" 2>/dev/null | tail -n 1)
  if [ -z "$pointer" ] || [ ! -f "$pointer" ]; then
    printf 'waiting for %s to start (no membership in %s yet)\n' "$ZOOKEEPER_GATE_SERVICE" "$ZOOKEEPER_GATE_CONFIG"
    return 1
  fi
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in server.*=*) ;; *) continue ;; esac
    spec=${line#*=}
    if [ "${spec:0:1}" = "[" ]; then
      host=${spec#[}
      host=${host%%]*}
    else
      host=${spec%%:*}
    fi
    port=${line##*:}
    mode=$(zookeeper_gate_mode "$host" "$port")
    members=$((members + 1))
    case "$mode" in
      leader) leaders=$((leaders + 1)) serving=$((serving + 1)) ;;
      follower) serving=$((serving + 1)) ;;
    esac
    report="$report ${line%%=*}:${mode:-not-serving}"
  done <"$pointer"
  printf 'ZooKeeper: %s of %s members serving, %s leader(s):%s\n' "$serving" "$members" "$leaders" "$report"
  [ "$members" -gt 0 ] && [ "$serving" -eq "$members" ] && [ "$leaders" -eq 1 ]
}

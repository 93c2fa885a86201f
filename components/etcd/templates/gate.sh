# etcd_gate (a node health gate, see components/nodes/gates.py): passes when taking this host down cannot cost
# the etcd cluster its quorum. While this host's member is enabled or running, every member must answer
# `endpoint health --cluster` (asked through the local member, with its own certificate); a host whose
# member is neither (etcd not installed yet, or a joiner not started yet) has nothing to wait for.
# Parameters: ETCD_GATE_ETCDCTL, ETCD_GATE_SERVICE, ETCD_GATE_PKI_DIR, ETCD_GATE_ENDPOINT.
etcd_gate() {
  if ! systemctl is-enabled --quiet "$ETCD_GATE_SERVICE" 2>/dev/null \
    && ! systemctl is-active --quiet "$ETCD_GATE_SERVICE" 2>/dev/null; then
    printf '%s is not set up on this host: nothing to wait for\n' "$ETCD_GATE_SERVICE"
    return 0
  fi
  ETCDCTL_API=3 "$ETCD_GATE_ETCDCTL" --endpoints="$ETCD_GATE_ENDPOINT" \
    --cacert="$ETCD_GATE_PKI_DIR/ca.crt" --cert="$ETCD_GATE_PKI_DIR/member.crt" \
    --key="$ETCD_GATE_PKI_DIR/member.key" --dial-timeout=3s --command-timeout=10s endpoint health --cluster
}

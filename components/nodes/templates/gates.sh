# The health-gate runner (components/nodes/gates.py documents the contract of a gate).
# Parameters: GATE_NAMES, GATE_FUNCTIONS (the gates' shell functions, defined by their fragments), GATE_TIMEOUT.

# wait_for_gates WHEN: returns once every gate passed in the same round; fails after GATE_TIMEOUT seconds
# naming the gate that did not pass and its last output.
wait_for_gates() {
  local when=$1 deadline index output failing
  [ "${#GATE_FUNCTIONS[@]}" -eq 0 ] && return 0
  deadline=$((SECONDS + GATE_TIMEOUT))
  while :; do
    failing=""
    for index in "${!GATE_FUNCTIONS[@]}"; do
      if ! output=$("${GATE_FUNCTIONS[$index]}" 2>&1); then
        failing=${GATE_NAMES[$index]}
        break
      fi
    done
    if [ -z "$failing" ]; then
      printf 'gates passed %s: %s\n' "$when" "${GATE_NAMES[*]}"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'error: the %s health gate did not pass within %ss %s; its last output:\n%s\n' \
        "$failing" "$GATE_TIMEOUT" "$when" "$output" >&2
      return 1
    fi
    sleep 2
  done
}

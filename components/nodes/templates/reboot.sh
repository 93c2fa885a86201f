# Reboots a Raspberry Pi whose running kernel lacks a flag of PI_CMDLINE_FLAGS, once the health gates of what
# runs on it pass; otherwise checks the boot state. Runs after the prepare step wrote cmdline.txt.
# Parameters: PI_CMDLINE_FLAGS, PENDING_AT_PREPARE and PENDING_IN_BOOT (what the prepare step found missing
# from the running kernel, and in which boot: part of this step's input, so that a prepare run that finds a
# flag missing makes this step run again), the gates'.
# The decision comes from the host (the running kernel's command line), never from whether this run wrote
# the file: a run interrupted after the prepare step still reboots the next time.
# sshd stops accepting connections once the reboot is scheduled, so the next step's dial succeeds only once
# the host is back (this session's own process keeps running).
schedule_reboot() {
  systemd-run --quiet --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot
  systemctl stop ssh.socket ssh.service >/dev/null 2>&1 || true
  changed "reboot scheduled to apply the kernel command line (${MISSING_FLAGS[*]})"
}

if [ "${#PENDING_AT_PREPARE[@]}" -gt 0 ]; then
  printf 'the prepare step found the running kernel without %s (boot %s)\n' "${PENDING_AT_PREPARE[*]}" \
    "$PENDING_IN_BOOT"
fi
mapfile -t MISSING_FLAGS < <(flags_not_running)
if [ "${#MISSING_FLAGS[@]}" -eq 0 ]; then
  check_boot_state
  print_facts 0
  exit 0
fi
CMDLINE_FILE=$(pi_cmdline_file)
CMDLINE=$(head -n 1 "$CMDLINE_FILE")
for flag in "${MISSING_FLAGS[@]}"; do
  if ! has_word "$CMDLINE" "$flag"; then
    printf 'error: %s lacks %s, which the prepare step writes: run again\n' "$CMDLINE_FILE" "$flag" >&2
    exit 1
  fi
done
wait_for_gates "before the reboot"
print_facts 1
schedule_reboot

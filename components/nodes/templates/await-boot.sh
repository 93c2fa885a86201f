# Runs after the reboot step scheduled a reboot. Parameters: PREVIOUS_BOOT_ID, PI_CMDLINE_FLAGS (+ gates).
# sshd stopped before the reboot, so reaching this point means the host came back; the boot id proves it.
if [ "$(cat /proc/sys/kernel/random/boot_id)" = "$PREVIOUS_BOOT_ID" ]; then
  echo "error: the host was expected to reboot but its boot id is unchanged" >&2
  exit 1
fi
changed "host rebooted"
check_boot_state
# What runs here is back before the next host may go down.
wait_for_gates "after the reboot"
print_facts 0

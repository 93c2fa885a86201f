# Runs after the prepare step of a Raspberry Pi. Parameters: REBOOT_SCHEDULED (0/1), PREVIOUS_BOOT_ID.
# When a reboot was scheduled, sshd was stopped first, so reaching this point means the host came back;
# the boot id proves it.
if [ "$REBOOT_SCHEDULED" = 1 ] && [ "$(cat /proc/sys/kernel/random/boot_id)" = "$PREVIOUS_BOOT_ID" ]; then
  echo "error: the host was expected to reboot but its boot id is unchanged" >&2
  exit 1
fi
if [ "$REBOOT_SCHEDULED" = 1 ]; then
  changed "host rebooted"
fi
print_facts 0

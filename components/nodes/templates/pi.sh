# Raspberry Pi boot state: the kernel command line file, the flags the running kernel was booted with, and
# what must hold after a boot (after nodes/facts.sh: memory_cgroup_enabled). Parameters: PI_CMDLINE_FLAGS.

# pi_cmdline_file: prints the cmdline.txt the firmware reads (/boot/firmware since Bookworm, /boot before).
pi_cmdline_file() {
  local candidate
  for candidate in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
    if [ -f "$candidate" ]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  echo "error: no cmdline.txt in /boot/firmware or /boot; is this a Raspberry Pi?" >&2
  return 1
}

# has_word LINE WORD: LINE contains WORD as a whole space-separated word.
has_word() {
  case " $1 " in
    *" $2 "*) return 0 ;;
    *) return 1 ;;
  esac
}

# flags_not_running: prints each flag of PI_CMDLINE_FLAGS the running kernel was not booted with.
# Flag by flag, not the whole file: the firmware prepends its own words and rewrites some (console=serial0
# becomes console=ttyAMA0 or ttyS0), so /proc/cmdline never equals cmdline.txt, on any Pi.
flags_not_running() {
  local running flag
  running=$(tr -s '[:space:]' ' ' </proc/cmdline)
  for flag in "${PI_CMDLINE_FLAGS[@]}"; do
    has_word "$running" "$flag" || printf '%s\n' "$flag"
  done
}

# write_cmdline FILE LINE: replaces FILE (on the boot partition, vfat: no journal) so that a power cut
# leaves either the old or the new file: a temporary file beside it, flushed, then renamed over it.
write_cmdline() {
  local file=$1 line=$2 dir tmp
  dir=$(dirname "$file")
  rm -f "$dir"/.cmdline.txt.cookbook-*  # left by a write that was interrupted
  tmp=$(mktemp "$dir/.cmdline.txt.cookbook-XXXXXX")
  printf '%s\n' "$line" >"$tmp"
  # vfat has no permissions to copy; elsewhere keep the file's mode instead of mktemp's 0600.
  chmod --reference="$file" "$tmp" 2>/dev/null || true
  sync "$tmp"
  mv -f "$tmp" "$file"
  sync "$dir"
}

# check_boot_state: after a boot with every flag, the memory cgroup must be on and swap off.
check_boot_state() {
  local missing swaps
  missing=$(flags_not_running | tr '\n' ' ')
  if [ -n "$missing" ]; then
    printf 'error: the kernel booted without %sthough %s has them: does the firmware read another cmdline.txt?\n' \
      "$missing" "$(pi_cmdline_file)" >&2
    return 1
  fi
  if ! memory_cgroup_enabled; then
    printf 'error: the memory cgroup is off although the kernel booted with %s; Kubernetes needs it\n' \
      "${PI_CMDLINE_FLAGS[*]}" >&2
    return 1
  fi
  swaps=$(swapon --show=NAME --noheadings 2>/dev/null | tr '\n' ' ')
  if [ -n "$swaps" ]; then
    printf 'error: swap is on again after the boot (%s): something other than /etc/fstab, dphys-swapfile and rpi-swap enables it\n' \
      "$swaps" >&2
    return 1
  fi
}

# Swap off for good (Kubernetes needs it): dphys-swapfile, rpi-swap, swap already on, /etc/fstab entries.
# Functions only; nodes/prepare.sh calls disable_swap. After shared/common.sh and shared/files.sh.

# Raspberry Pi OS trixie: rpi-swap's systemd generator sets up swap (zram, a file, or both) at every boot
# from /etc/rpi/swap.conf; a drop-in with Mechanism=none makes it set up none. The generator runs again at
# daemon-reload; swap already on is turned off below.
disable_rpi_swap() {
  if [ ! -e /etc/rpi/swap.conf ] && [ ! -e /usr/lib/systemd/system-generators/rpi-swap-generator ]; then
    return 0
  fi
  install_file /etc/rpi/swap.conf.d/90-cluster-cookbook.conf 0644 <<'RPI_SWAP'
# Kubernetes needs swap off: no zram, no swap file (cluster-cookbook).
[Main]
Mechanism=none
RPI_SWAP
  if [ "$FILE_CHANGED" = 1 ]; then
    systemctl daemon-reload
  fi
}

disable_swap() {
  local fstab_swap='^[^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]]'
  if systemctl is-enabled --quiet dphys-swapfile.service 2>/dev/null; then
    systemctl disable --now dphys-swapfile.service >/dev/null 2>&1
    changed "dphys-swapfile disabled"
  fi
  disable_rpi_swap
  if [ -n "$(swapon --show=NAME --noheadings 2>/dev/null)" ]; then
    swapoff -a
    changed "swap turned off"
  fi
  if grep -Eq "$fstab_swap" /etc/fstab 2>/dev/null; then
    sed -E -i.cookbook-bak "s/($fstab_swap.*)\$/# disabled by cluster-cookbook: \\1/" /etc/fstab
    changed "swap entries in /etc/fstab commented out"
  fi
}

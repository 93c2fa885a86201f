# Prepares a node (after nodes/pi.sh). Parameters: NODE_HOSTNAME, PACKAGES, KUBERNETES_NETWORKING,
# TIME_SERVERS, PI_CMDLINE_FLAGS (empty unless the node is a Raspberry Pi). Never reboots: on a Pi, the
# reboot step that follows decides from the running kernel whether the new command line needs one.
# A host with a read-only /usr and no apt (Fedora CoreOS, Flatcar) gets nothing installed: asking for packages
# there is an error, and time sync uses the service its image runs.

set_hostname() {
  if [ "$(cat /etc/hostname 2>/dev/null)" != "$NODE_HOSTNAME" ]; then
    printf '%s\n' "$NODE_HOSTNAME" >/etc/hostname
    changed "/etc/hostname set to $NODE_HOSTNAME"
  fi
  if [ "$(hostname)" != "$NODE_HOSTNAME" ]; then
    hostname "$NODE_HOSTNAME"
    changed "hostname set to $NODE_HOSTNAME"
  fi
  if ! grep -Eq "^127\.0\.1\.1[[:space:]]+$NODE_HOSTNAME([[:space:]]|\$)" /etc/hosts; then
    sed -i '/^127\.0\.1\.1[[:space:]]/d' /etc/hosts
    printf '127.0.1.1\t%s\n' "$NODE_HOSTNAME" >>/etc/hosts
    changed "/etc/hosts maps 127.0.1.1 to $NODE_HOSTNAME"
  fi
}

configure_kubernetes_networking() {
  local module setting key value proc_file
  install_file /etc/modules-load.d/cluster-cookbook.conf 0644 <<'MODULES'
overlay
br_netfilter
MODULES
  for module in overlay br_netfilter; do
    [ -d "/sys/module/$module" ] && continue
    if command -v modprobe >/dev/null && modprobe "$module" 2>/dev/null; then
      changed "kernel module $module loaded"
    else
      warn "kernel module $module is not loaded and could not be loaded"
    fi
  done
  install_file /etc/sysctl.d/99-cluster-cookbook.conf 0644 <<'SYSCTL'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
SYSCTL
  for setting in net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1; do
    key=${setting%%=*}
    value=${setting#*=}
    proc_file=/proc/sys/${key//.//}
    if [ ! -e "$proc_file" ]; then
      warn "sysctl $key is not available on this kernel"
    elif [ "$(cat "$proc_file")" != "$value" ]; then
      sysctl -q -w "$key=$value"
      changed "sysctl $key=$value"
    fi
  done
}

# read_only_time_service: on a host where nothing can be installed (read-only /usr, no apt: Fedora CoreOS,
# Flatcar), the time service its image runs: chronyd (Fedora CoreOS), else systemd-timesyncd (Flatcar).
read_only_time_service() {
  local unit
  for unit in chronyd systemd-timesyncd; do
    if systemctl cat "$unit.service" >/dev/null 2>&1; then
      printf '%s\n' "$unit"
      return 0
    fi
  done
  printf 'error: /usr is read-only and this host has neither chronyd nor systemd-timesyncd; nothing can be installed here\n' >&2
  return 1
}

configure_time_sync() {
  local service conf
  if usr_read_only && ! command -v apt-get >/dev/null; then
    service=$(read_only_time_service)
    conf=/etc/systemd/timesyncd.conf.d/cluster-cookbook.conf
    if [ "$service" = chronyd ]; then
      if [ "${#TIME_SERVERS[@]}" -gt 0 ]; then
        printf 'error: prepare.time_servers: this host runs chronyd with its image'"'"'s /etc/chrony.conf (Fedora CoreOS), which reads no drop-in directory; set the servers in that file at first boot, or leave prepare.time_servers empty\n' >&2
        exit 1
      fi
      conf=""  # nothing to write: chronyd keeps the image's sources
    fi
  elif is_installed chrony; then
    service=chrony
    conf=/etc/chrony/sources.d/cluster-cookbook.sources
  else
    apt_install systemd-timesyncd
    service=systemd-timesyncd
    conf=/etc/systemd/timesyncd.conf.d/cluster-cookbook.conf
  fi
  if [ -z "$conf" ]; then
    FILE_CHANGED=0
  elif [ "${#TIME_SERVERS[@]}" -gt 0 ]; then
    if [ "$service" = chrony ]; then
      install_file "$conf" 0644 < <(printf 'server %s iburst\n' "${TIME_SERVERS[@]}")
    else
      install_file "$conf" 0644 < <(printf '[Time]\nNTP=%s\n' "${TIME_SERVERS[*]}")
    fi
  elif [ -f "$conf" ]; then
    rm -f "$conf"
    FILE_CHANGED=1
    changed "removed $conf"
  else
    FILE_CHANGED=0
  fi
  if ! systemctl is-enabled --quiet "$service"; then
    systemctl enable --now "$service" >/dev/null 2>&1
    changed "$service enabled"
  elif [ "$FILE_CHANGED" = 1 ]; then
    systemctl try-restart "$service"
  fi
}

# configure_pi_cmdline: adds the missing flags to cmdline.txt (one line), keeping a copy of the previous file.
configure_pi_cmdline() {
  local file current updated flag
  [ "${#PI_CMDLINE_FLAGS[@]}" -eq 0 ] && return 0
  file=$(pi_cmdline_file)
  current=$(head -n 1 "$file")
  updated=$current
  for flag in "${PI_CMDLINE_FLAGS[@]}"; do
    has_word "$updated" "$flag" || updated="$updated $flag"
  done
  if [ "$updated" != "$current" ]; then
    cp -p "$file" "$file.cookbook-bak"
    write_cmdline "$file" "$updated"
    changed "$file now has ${PI_CMDLINE_FLAGS[*]}"
  fi
}

set_hostname
if [ "${#PACKAGES[@]}" -gt 0 ] && ! command -v apt-get >/dev/null; then
  printf 'error: prepare.packages asks for %s, but this host has no apt-get (Fedora CoreOS, Flatcar: nothing can be installed); set prepare.packages to []\n' "${PACKAGES[*]}" >&2
  exit 1
fi
apt_install "${PACKAGES[@]}"
install_docker
disable_swap
if [ "$KUBERNETES_NETWORKING" = 1 ]; then
  configure_kubernetes_networking
fi
configure_time_sync
configure_pi_cmdline
print_facts 0
if [ "${#PI_CMDLINE_FLAGS[@]}" -gt 0 ]; then
  # What the reboot step will find: its input, so that it runs whenever this changed.
  printf 'COOKBOOK_PENDING_FLAGS=%s\n' "$(flags_not_running | tr '\n' ' ')"
fi

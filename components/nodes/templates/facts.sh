# print_facts REBOOT_SCHEDULED: prints one line "COOKBOOK_FACTS=<json>" describing the host.
json_string() {
  local value
  value=$(printf '%s' "$1" | tr -d '\000-\037')
  value=${value//\\/\\\\}
  printf '"%s"' "${value//\"/\\\"}"
}

os_release_field() {
  sed -n "s/^$1=//p" /etc/os-release 2>/dev/null | tr -d '"' | head -n 1
}

# usr_read_only: /usr is mounted read-only (Fedora CoreOS, Flatcar): binaries go to /opt/bin instead.
usr_read_only() {
  case ",$(findmnt -rno OPTIONS --target /usr 2>/dev/null)," in
    *,ro,*) return 0 ;;
    *) return 1 ;;
  esac
}

print_facts() {
  local arch model="" is_pi=false memory=false cgroup_version=1 missing_modules="" module wireguard=false
  local usr_ro=false
  arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  case "$arch" in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    armv6l | armv7l) arch=armhf ;;
  esac
  if [ -r /proc/device-tree/model ]; then
    model=$(tr -d '\000' </proc/device-tree/model)
  fi
  case "$model" in "Raspberry Pi"*) is_pi=true ;; esac
  memory_cgroup_enabled && memory=true
  wireguard_available && wireguard=true
  usr_read_only && usr_ro=true
  [ -f /sys/fs/cgroup/cgroup.controllers ] && cgroup_version=2
  for module in overlay br_netfilter; do
    [ -d "/sys/module/$module" ] || missing_modules="$missing_modules${missing_modules:+,}$(json_string "$module")"
  done
  printf 'COOKBOOK_FACTS={"architecture":%s,"os_id":%s,"os_version_id":%s,"os_pretty_name":%s,' \
    "$(json_string "$arch")" "$(json_string "$(os_release_field ID)")" \
    "$(json_string "$(os_release_field VERSION_ID)")" "$(json_string "$(os_release_field PRETTY_NAME)")"
  printf '"is_pi":%s,"model":%s,"memory_cgroup":%s,"cgroup_version":%s,"kernel":%s,' \
    "$is_pi" "$(json_string "$model")" "$memory" "$cgroup_version" "$(json_string "$(uname -r)")"
  printf '"missing_kernel_modules":[%s],"wireguard":%s,"usr_read_only":%s,"boot_id":%s,"reboot_scheduled":%s}\n' \
    "$missing_modules" "$wireguard" "$usr_ro" "$(json_string "$(cat /proc/sys/kernel/random/boot_id)")" "$([ "$1" = 1 ] && echo true || echo false)"
}

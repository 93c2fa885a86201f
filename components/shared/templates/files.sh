# Idempotent file and package helpers for steps that change the host.
# install_file PATH MODE < CONTENT: replaces PATH atomically only when the content differs.
# Sets FILE_CHANGED to 1 when it wrote the file, 0 otherwise.
FILE_CHANGED=0
install_file() {
  local path=$1 mode=$2 tmp
  mkdir -p "$(dirname "$path")"
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    FILE_CHANGED=0
  else
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$path"
    FILE_CHANGED=1
    changed "wrote $path"
  fi
}

# A fresh host (a Pi's first boot) runs apt-daily/unattended-upgrades: wait for their locks, don't fail.
APT_LOCK_TIMEOUT=600

# apt_update: `apt-get update`, waiting up to APT_LOCK_TIMEOUT s for the package lists lock (apt-get update
# does not honour DPkg::Lock::Timeout, checked with apt 2.6: it fails at once while another apt holds it).
apt_update() {
  local deadline=$((SECONDS + APT_LOCK_TIMEOUT)) output
  until output=$(apt-get update -qq 2>&1); do
    if [ "$SECONDS" -ge "$deadline" ] || ! grep -q 'Could not get lock' <<<"$output"; then
      printf '%s\n' "$output" >&2
      return 1
    fi
    sleep 3
  done
}

# apt_install PKG...: installs the packages that are missing, in one apt transaction.
apt_install() {
  local missing=() package
  for package in "$@"; do
    is_installed "$package" || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  changed "installed ${missing[*]}"
}

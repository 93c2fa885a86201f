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

# apt_install PKG...: installs the packages that are missing, in one apt transaction.
apt_install() {
  local missing=() package
  for package in "$@"; do
    is_installed "$package" || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  changed "installed ${missing[*]}"
}

# Download mode: fetches etcd's release tarball for this host into TARBALL_PATH, checked against the release's
# SHA256SUMS fetched from the same place (as k3s's installer checks its binary), unless the file there already
# matches; prints the tarball's sha256 for the member step. Parameters: TARBALL_URL, SUMS_URL, FILE_NAME,
# TARBALL_PATH, SHA256_MARKER.
fetch() {
  curl --fail --silent --show-error --location --retry 5 --retry-connrefused --connect-timeout 30 "$@"
}

download_release() {
  local sums expected staging
  if ! sums=$(fetch "$SUMS_URL"); then
    printf 'error: cannot fetch %s (etcd.download_url, etcd.version)\n' "$SUMS_URL" >&2
    exit 1
  fi
  expected=$(awk -v name="$FILE_NAME" '$2 == name || $2 == "*" name { print $1; exit }' <<<"$sums")
  if [ -z "$expected" ]; then
    printf 'error: %s lists no %s: etcd publishes no release for this architecture\n' "$SUMS_URL" "$FILE_NAME" >&2
    exit 1
  fi
  if ! printf '%s  %s\n' "$expected" "$TARBALL_PATH" | sha256sum --check --status 2>/dev/null; then
    install -d -m 0755 "${TARBALL_PATH%/*}"
    staging=$(mktemp "$TARBALL_PATH.XXXXXX")
    if ! fetch --output "$staging" "$TARBALL_URL" \
      || ! printf '%s  %s\n' "$expected" "$staging" | sha256sum --check --status; then
      rm -f "$staging"
      printf 'error: %s could not be fetched or does not match its sha256 in %s\n' "$TARBALL_URL" "$SUMS_URL" >&2
      exit 1
    fi
    mv -f "$staging" "$TARBALL_PATH"
    changed "downloaded $FILE_NAME"
  fi
  printf '%s%s\n' "$SHA256_MARKER" "$expected"
}

download_release

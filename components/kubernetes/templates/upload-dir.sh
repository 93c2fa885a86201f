# The directory the airgap uploads go to: the recipe's own (not /var/tmp, whose files systemd-tmpfiles removes
# after 30 days, while CopyToRemote copies again only when its inputs change), writable by the login user that
# CopyToRemote connects as. Parameters: UPLOAD_DIR, UPLOAD_OWNER.
if [ ! -d "$UPLOAD_DIR" ] || [ "$(stat -c '%U %a' "$UPLOAD_DIR")" != "$UPLOAD_OWNER 700" ]; then
  install -d -m 0700 -o "$UPLOAD_OWNER" "$UPLOAD_DIR"
  chown "$UPLOAD_OWNER" "$UPLOAD_DIR"
  chmod 0700 "$UPLOAD_DIR"
  changed "made $UPLOAD_DIR for the uploads of $UPLOAD_OWNER"
fi

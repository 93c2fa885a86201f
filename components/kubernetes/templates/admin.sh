# Prints the admin kubeconfig k3s wrote on this server, base64 on one line after COOKBOOK_KUBECONFIG=;
# changes nothing. Parameters: ADMIN_KUBECONFIG, READY_TIMEOUT.
wait_until "$READY_TIMEOUT" "k3s to write $ADMIN_KUBECONFIG" test -s "$ADMIN_KUBECONFIG"
printf 'COOKBOOK_KUBECONFIG=%s\n' "$(base64 -w0 <"$ADMIN_KUBECONFIG")"

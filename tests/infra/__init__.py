"""Test-host infrastructure: throwaway systemd-nspawn Debian hosts for integration tests (see README.md)."""

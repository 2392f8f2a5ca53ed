#!/usr/bin/env bash
# Install the system packages the integration tests need, only those missing (idempotent).
# Each entry: a command that must exist, and the Debian package providing it.
set -euo pipefail
declare -a NEEDED=()
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || NEEDED+=("$2"); }

# (command-or-path  debian-package) pairs; extended as integration tests need servers.

while read -r cmd pkg; do
  [ -z "${cmd:-}" ] && continue
  case "$cmd" in \#*) continue;; esac
  need "$cmd" "$pkg"
done < "$(dirname "$0")/system-deps.txt"

if [ "${#NEEDED[@]}" -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${NEEDED[*]}" >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "error: these packages are needed for the integration tests: ${NEEDED[*]}" >&2
  echo "       run: sudo apt-get install ${NEEDED[*]}" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${NEEDED[@]}" >/dev/null

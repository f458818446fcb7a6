#!/usr/bin/env bash
# Stops an install on a box the gateway cannot run on, saying why. Sourced by .ci/setup and
# systemd/install.sh. The model runtime (onnxruntime) and OpenCV publish wheels for 64-bit
# systems only: 32-bit Raspberry Pi OS (armv7l) has none, and building them on a Pi fails.
#   GATEWAY_ARCH / GATEWAY_PYTHON override what is checked (tests).
check_platform() {
  local python="${1:-python3}" arch
  arch="${GATEWAY_ARCH:-$(uname -m)}"
  case "$arch" in
    x86_64|amd64|aarch64|arm64) ;;
    *)
      echo "this is a $arch system: the gateway needs a 64-bit OS (64-bit Raspberry Pi OS (bookworm)" \
           "or Debian 12 on x86_64/arm64); onnxruntime and OpenCV have no $arch wheels" >&2
      return 1 ;;
  esac
  local version
  if ! version=$("${GATEWAY_PYTHON:-$python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then
    echo "no Python 3 found (${GATEWAY_PYTHON:-$python}): install python3 (Debian 12 ships 3.11)" >&2
    return 1
  fi
  if [ "$(printf '%s\n3.11\n' "$version" | sort -V | head -1)" != "3.11" ]; then
    echo "Python $version is too old: the gateway needs Python 3.11 or newer (64-bit Raspberry Pi OS" \
         "(bookworm) / Debian 12 ship 3.11)" >&2
    return 1
  fi
}

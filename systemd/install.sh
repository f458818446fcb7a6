#!/usr/bin/env bash
# Install or upgrade the gateway as a systemd service on Debian 12 or 64-bit Raspberry Pi OS
# (bookworm) on x86_64 or arm64; 32-bit systems are refused (no onnxruntime/OpenCV wheels).
#
#   sudo systemd/install.sh [--model FILE] [--with-broker]
#
#   /opt/gateway/venv        the gateway and its Python packages (replaced on upgrade)
#   /usr/local/bin/gateway   the `gateway` command (a link to /opt/gateway/venv/bin/gateway)
#   /opt/gateway/models      detector models (--model FILE is copied here)
#   /etc/gateway/gateway.yaml    configuration (written once, never overwritten)
#   /etc/gateway/gateway.env     secrets for ${VARS} in the YAML (mode 640, written once)
#   /var/lib/gateway         outbox, event history, snapshots (never touched: an upgrade keeps
#                            undelivered alerts, which the restarted service sends first)
#
# Idempotent: run it again to upgrade from a newer checkout. Options for packaging and tests:
#   --no-apt --no-user --no-systemctl, and GATEWAY_PREFIX / GATEWAY_ETC / GATEWAY_STATE /
#   GATEWAY_BIN_DIR to install under other directories.
set -euo pipefail

SOURCE_DIR="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="${GATEWAY_PREFIX:-/opt/gateway}"
ETC="${GATEWAY_ETC:-/etc/gateway}"
STATE="${GATEWAY_STATE:-/var/lib/gateway}"
UNIT_DIR="${GATEWAY_UNIT_DIR:-/etc/systemd/system}"
BIN_DIR="${GATEWAY_BIN_DIR:-/usr/local/bin}"
MODEL="" APT=1 USER_SETUP=1 SYSTEMCTL=1 BROKER=0

while (($#)); do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --with-broker) BROKER=1; shift ;;
    --no-apt) APT=0; shift ;;
    --no-user) USER_SETUP=0; shift ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "install: $*"; }

source "$SOURCE_DIR/systemd/check-platform.sh"
if command -v python3 >/dev/null && ! check_platform python3; then
  exit 1
fi

if [ -z "$MODEL" ] && [ ! -f "$PREFIX/models/yolox_nano.onnx" ]; then
  echo "install: no detector model: give --model FILE (e.g. yolox_nano.onnx) on the first install" >&2
  exit 2
fi
if [ -n "$MODEL" ] && [ ! -f "$MODEL" ]; then
  echo "install: --model $MODEL: no such file" >&2
  exit 2
fi

if ((APT)); then
  packages=(python3 python3-venv)
  ((BROKER)) && packages+=(mosquitto mosquitto-clients)
  say "system packages: ${packages[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

if ((USER_SETUP)) && ! id gateway >/dev/null 2>&1; then
  say "creating system user 'gateway'"
  useradd --system --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin gateway
fi

check_platform python3 || exit 1
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  say "creating $PREFIX/venv"
  mkdir -p "$PREFIX"
  python3 -m venv "$PREFIX/venv"
fi
say "installing the gateway from $SOURCE_DIR into $PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install -q --upgrade pip
"$PREFIX/venv/bin/python" -m pip install -q --upgrade "$SOURCE_DIR"
install -m 644 "$SOURCE_DIR/README.md" "$PREFIX/README.md"

# `gateway` on every user's PATH (and sudo's secure_path), so the README's commands work as written.
command_link="$BIN_DIR/gateway"
if [ -e "$command_link" ] && [ ! -L "$command_link" ]; then
  say "warning: $command_link exists and is not a link: left alone (the command is $PREFIX/venv/bin/gateway)"
else
  mkdir -p "$BIN_DIR"
  ln -sfn "$PREFIX/venv/bin/gateway" "$command_link"
  say "command installed: $command_link -> $PREFIX/venv/bin/gateway"
fi

mkdir -p "$PREFIX/models"
if [ -n "$MODEL" ]; then
  install -m 644 "$MODEL" "$PREFIX/models/$(basename "$MODEL")"
fi
model_path="$PREFIX/models/$(basename "${MODEL:-yolox_nano.onnx}")"

mkdir -p "$ETC" "$STATE"
if [ ! -f "$ETC/gateway.yaml" ]; then
  say "writing a starter $ETC/gateway.yaml (add cameras: see 'gateway discover' and config/example.yaml)"
  cat > "$ETC/gateway.yaml" <<YAML
# Gateway configuration: reference with every key in $PREFIX/README.md and the project's
# config/example.yaml. Check after editing (with the secrets of gateway.env):
#   sudo bash -c 'set -a; . $ETC/gateway.env; gateway check -c $ETC/gateway.yaml'
# Apply:  sudo systemctl reload gateway   (cameras restart alone; other sections need a restart)
gateway:
  id: $(hostname -s | tr -c 'A-Za-z0-9_.\n-' '-')
  name: ""
  township: ""
  timezone: Asia/Shanghai
  data_dir: $STATE
detector:
  model: $model_path
  threads: $(nproc)
mqtt:
  host: 127.0.0.1          # the township centre's broker
  port: 1883
api:
  bind: 127.0.0.1
  port: 8080
cameras: []
YAML
fi
if [ ! -f "$ETC/gateway.env" ]; then
  cat > "$ETC/gateway.env" <<'ENV'
# Secrets referenced from gateway.yaml as ${NAME}; one NAME='value' per line, the value in single
# quotes (read the same way by systemd and by a shell). Then: sudo systemctl restart gateway
# CAM_PASSWORD=
# MQTT_PASSWORD=
# API_TOKEN=
ENV
  chmod 640 "$ETC/gateway.env"
fi
if ((USER_SETUP)); then
  chown root:gateway "$ETC/gateway.env"
  chown gateway:gateway "$STATE"
  chmod 750 "$STATE"
fi

unit="$SOURCE_DIR/systemd/gateway.service"
sed -e "s|/opt/gateway|$PREFIX|g" -e "s|/etc/gateway|$ETC|g" -e "s|/var/lib/gateway|$STATE|g" \
  "$unit" > "$UNIT_DIR/gateway.service.new"
mv "$UNIT_DIR/gateway.service.new" "$UNIT_DIR/gateway.service"
say "unit installed: $UNIT_DIR/gateway.service"

if ! "$PREFIX/venv/bin/gateway" check -c "$ETC/gateway.yaml" --load-model; then
  say "$ETC/gateway.yaml or its model has problems (above): fix them, then: systemctl restart gateway"
  exit 1
fi
if ((SYSTEMCTL)); then
  systemctl daemon-reload
  systemctl enable gateway
  systemctl restart gateway
  say "running: systemctl status gateway; logs: journalctl -u gateway -f"
fi
say "done"

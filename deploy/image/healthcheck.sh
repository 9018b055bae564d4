#!/bin/bash
# Exit 0 if muster's HTTP endpoint PATH (default /healthz) answers 200. bash's /dev/tcp,
# as the slim image has no curl or wget. The address is muster's own view of http.listen
# (config from MUSTER_CONFIG_TOML or MUSTER_CONFIG, plus MUSTER_* overrides).
set -euo pipefail
path=${1:-/healthz}
if [ -n "${MUSTER_CONFIG_TOML:-}" ]; then
  config=$(muster print-config --config /dev/stdin <<<"$MUSTER_CONFIG_TOML")
else
  config=$(muster print-config --config "${MUSTER_CONFIG:-/etc/muster/muster.toml}")
fi
listen=$(sed -n '/^\[http\]$/,/^\[/s/^listen = "\(.*\)"$/\1/p' <<<"$config")
port=${listen##*:}
host=${listen%:*}
case $host in
  0.0.0.0) host=127.0.0.1 ;;
  "[::]") host=::1 ;;
  \[*\]) host=${host#[} host=${host%]} ;;
esac
exec 3<>"/dev/tcp/$host/$port"
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3 || true
case $status in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "muster-healthcheck: GET $path on $listen: ${status%$'\r'}" >&2; exit 1 ;;
esac

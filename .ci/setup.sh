#!/bin/sh
# Installs what the tests need on a fresh Debian machine, skipping what is
# already there: Deno (from the npm registry), Chromium and Python's
# websockets (from Debian) for the real-peer tests, openssl for the
# self-signed certificates of the wss: tests, redis-server for the scale-out
# tests (each test starts its own on a free port), and the test-only npm
# packages (into node_modules/: deno.json says "nodeModulesDir": "manual",
# so that `deno task echo` never downloads them).
set -eu

if ! command -v deno >/dev/null 2>&1; then
  npm install -g deno@2
fi

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
/usr/bin/python3 -c "import websockets" >/dev/null 2>&1 || missing="$missing python3-websockets"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
fi

# The npm packages of deno.lock (test peers, the browser driver).
deno install

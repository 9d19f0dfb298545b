#!/usr/bin/env bash
# Installs the system packages webtune's tests need on a GPU-less Debian 12 machine:
#  - Mesa's Vulkan driver (lavapipe) from bookworm-backports: Dawn (npm `webgpu`) refuses Mesa 22;
#  - Debian's Chromium, for the browser tests (SwiftShader WebGPU), since Playwright cannot download browsers here.
# Idempotent. Runs apt-get when root; otherwise prints the exact commands to run.
set -euo pipefail

BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.sources
MESA_MIN_MAJOR=24

have_new_mesa() {
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  [ -n "$v" ] && [ "${v%%.*}" -ge "$MESA_MIN_MAJOR" ] 2>/dev/null
}
have_chromium() { [ -x /usr/bin/chromium ]; }

if have_new_mesa && have_chromium; then
  echo "setup-system: Mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) and $(/usr/bin/chromium --version 2>/dev/null) already installed"
  exit 0
fi

commands=$(cat <<CMDS
cat > $BACKPORTS <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1
DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
CMDS
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: not root. Run these as root:"
  echo "$commands"
  exit 1
fi

echo "setup-system: installing Mesa (bookworm-backports) and Chromium"
bash -euo pipefail -c "$commands"
have_new_mesa || { echo "setup-system: mesa-vulkan-drivers >= $MESA_MIN_MAJOR did not install" >&2; exit 1; }
have_chromium || { echo "setup-system: /usr/bin/chromium did not install" >&2; exit 1; }
echo "setup-system: done"

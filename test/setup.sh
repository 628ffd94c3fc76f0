#!/usr/bin/env bash
# Makes sure the real clients and servers the tests talk to are installed (Debian packages: podman
# and runc run the image `npm run image` builds; redis-server and a single-node Ceph RGW are the
# shared state and S3 store of the scale-out tests), and
# the compilers that build the sendfile addon the tests exercise.
# Runs before `npm test`; as root it installs what is missing, otherwise it says what to install.
set -euo pipefail

declare -A wanted=([skopeo]=skopeo [docker-registry]=docker-registry [containerd]=containerd [ctr]=containerd [tar]=tar [gzip]=gzip [htpasswd]=apache2-utils [openssl]=openssl [promtool]=prometheus [curl]=curl [wget]=wget [jq]=jq [make]=make [g++]=g++ [python3]=python3 [podman]=podman [runc]=runc [redis-server]=redis-server [ceph-mon]=ceph-mon [ceph-osd]=ceph-osd [radosgw]=radosgw [ceph]=ceph-common)
missing=()
for command in "${!wanted[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${wanted[$command]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  echo "tests need: ${missing[*]} — run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing test tools: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

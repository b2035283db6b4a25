#!/bin/sh
# Install the Debian packages the ns toolkit needs to build, test and run.
# As root, missing packages are installed with apt-get; otherwise they are
# named and the script exits 2.
PKGS="build-essential pkg-config jq bats parallel libsodium-dev libjq-dev libsqlite3-dev libwebsockets-dev libssl-dev sqlite3 procps openssl xxd iproute2"
missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "ns: missing Debian packages:$missing" >&2
	echo "ns: run as root: apt-get install$missing" >&2
	exit 2
fi
echo "ns: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || exit 2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2 || exit 2

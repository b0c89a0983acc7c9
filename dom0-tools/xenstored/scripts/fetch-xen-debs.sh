#!/bin/sh
# Downloads (never installs) the Debian packages holding Xen's own
# xenstore test program and the libraries it needs, and unpacks them under
# a cache directory, by default <workspace>/target/xen-debs (not committed).
#
#   dom0-tools/xenstored/scripts/fetch-xen-debs.sh [DEST]
#
# Afterwards: DEST/root/usr/lib/xen-4.17/bin/test-xenstore
# Run it with LD_LIBRARY_PATH=DEST/root/usr/lib/x86_64-linux-gnu if the
# system lacks libxenstore4 (the integration test does this itself).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-"$here/../../../target/xen-debs"}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
pkgs="xen-utils-4.17 libxenstore4 libxentoolcore1"
cd "$dest"
if ! apt-get download $pkgs >download.log 2>&1; then
    # A fresh machine may have no package lists yet.
    if [ "$(id -u)" = 0 ]; then
        apt-get update >>download.log 2>&1 || true
    fi
    apt-get download $pkgs >>download.log 2>&1 || {
        cat download.log >&2
        echo "fetch-xen-debs: apt-get download $pkgs failed" >&2
        exit 1
    }
fi
rm -rf root
for d in ./*.deb; do
    dpkg -x "$d" root
done
bin="$dest/root/usr/lib/xen-4.17/bin/test-xenstore"
test -x "$bin" || { echo "fetch-xen-debs: $bin not found in the package" >&2; exit 1; }
echo "$bin"

//! The domU payload of the domU scenarios: what dom0 needs to create an
//! unprivileged Linux guest with `keelctl create` (issue 14), as a second
//! cpio archive after dom0's own in one gzip stream (Linux unpacks
//! concatenated archives in order; GRUB, which decompresses the module,
//! takes one gzip member only):
//!
//! - `/usr/lib/keel/domu/vmlinuz`: Debian's kernel as shipped (the bzImage
//!   from `/boot`, not an extracted vmlinux: the builder unpacks it);
//! - `/usr/lib/keel/domu/initrd.gz`: the domU's own initramfs (busybox,
//!   xen-privcmd and xenfs, [`DOMU_MODULES`], Debian's `xenstore-read`, `-write` and
//!   its libraries, [`DOMU_INIT`]);
//! - `/etc/keel/domu.cfg`: its xl.cfg ([`DOMU_CFG`]);
//! - `/etc/keel/life.cfg`: the lifecycle scenarios' xl.cfg ([`LIFE_CFG`]);
//! - `/etc/keel/disk.cfg`: the disk scenario's ([`DISK_CFG`]), and
//!   `/etc/keel/net2.cfg` its second domU ([`NET2_CFG`]), `/etc/keel/bad.cfg`
//!   its misbehaving one ([`BAD_CFG`]);
//! - `/etc/keel/bench.cfg`: the split-driver bench's domU ([`BENCH_CFG`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::linux::Cpio;
use crate::xentools::{self, Entry};

/// The domU's xl.cfg. `earlyprintk=xen keep_bootcon`: the kernel's
/// messages also go through `console_io` to keel's serial as `(dN) ...`,
/// where the scenario reads them; `/init` writes its lines to `/dev/kmsg`.
pub const DOMU_CFG: &str = r#"# A PVH domU: Debian's kernel as shipped, its own initramfs.
name = "domu1"
type = "pvh"
kernel = "/usr/lib/keel/domu/vmlinuz"
ramdisk = "/usr/lib/keel/domu/initrd.gz"
extra = "console=hvc0 earlyprintk=xen keep_bootcon loglevel=6"
memory = 256
vcpus = 2
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "destroy"
"#;

/// The domU's own drivers beyond xenfs and privcmd, in load order
/// (`/init` insmods them first): its disks and network (issue 15) and ext4.
pub const DOMU_MODULES: &[&str] = &[
    "drivers/block/xen-blkfront.ko",
    "drivers/net/xen-netfront.ko",
    // /dev/xen/evtchn and /dev/xen/gntalloc: keel-bad-frontend's.
    "drivers/xen/xen-evtchn.ko",
    "drivers/xen/xen-gntalloc.ko",
    "crypto/crc32c_generic.ko",
    "lib/crc16.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
];

/// The disk scenario's domU (`/etc/keel/disk.cfg`): the same guest with
/// an image file in dom0 as its `xvda` (`keel.disk`: its /init mounts it,
/// counts its boots there, is rebooted once by dom0), restarted on reboot, and a
/// network interface on dom0's bridge `xenbr0` (`keel.net`).
pub const DISK_CFG: &str = r#"# A PVH domU with a disk: an image file in dom0, served by blkback.
name = "disk1"
type = "pvh"
kernel = "/usr/lib/keel/domu/vmlinuz"
ramdisk = "/usr/lib/keel/domu/initrd.gz"
extra = "console=hvc0 earlyprintk=xen keep_bootcon loglevel=6 keel.disk keel.net keel.attach"
memory = 256
vcpus = 2
disk = [ "/tmp/disk.img,raw,xvda,rw" ]
vif = [ "bridge=xenbr0" ]
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "destroy"
"#;

/// The disk scenario's second domU (`/etc/keel/net2.cfg`): 128 MiB, one
/// vCPU, a vif on `xenbr0` and no disk; `keel.ping=ME/PEER` makes its /init
/// take address ME and ping PEER (the disk scenario's domU): two domUs on
/// one bridge. It powers off after.
pub const NET2_CFG: &str = r#"# A PVH domU on dom0's bridge, to ping another domU.
name = "net2"
type = "pvh"
kernel = "/usr/lib/keel/domu/vmlinuz"
ramdisk = "/usr/lib/keel/domu/initrd.gz"
extra = "console=hvc0 earlyprintk=xen keep_bootcon loglevel=4 keel.ping=10.99.0.3/10.99.0.2"
memory = 128
vcpus = 1
vif = [ "bridge=xenbr0" ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#;

/// The split-driver bench's domU (`/etc/keel/bench.cfg`, `cargo xtask
/// bench --only split`): dom0's image file `/tmp/bench.img` as its `xvda`
/// (raw, through a loop device and blkback) and a vif on `xenbr0`;
/// `keel.bench_split` makes its /init write and read the whole disk and
/// send dom0 as many bytes over TCP whenever dom0 asks (xenstore
/// `data/go`). 2 vCPUs, as dom0 has. No `earlyprintk=xen`: its kernel
/// does not write to keel's serial while it is being timed. blkfront
/// with 256 indirect segments (its default is 32: 128 KiB): 1 MiB
/// requests, as dom0's own `dd bs=1M` on the loop device makes, where
/// the default splits each into eight. Measured on 2026-12-04 against the
/// default, in separate runs: QEMU (3 rounds, medians of 64 MiB) write
/// 0.62 → 0.45 s, read 0.55 → 0.36 s, fewer exits where both vCPUs share
/// one host thread; Bochs (one round of 32 MiB) write 1.00 → 1.04 s, read
/// 0.52 → 0.64 s, which loses the overlap of eight requests in flight.
pub const BENCH_CFG: &str = r#"# The split-driver bench's domU: blkfront and netfront against dom0 itself.
name = "bench"
type = "pvh"
kernel = "/usr/lib/keel/domu/vmlinuz"
ramdisk = "/usr/lib/keel/domu/initrd.gz"
extra = "console=hvc0 loglevel=4 keel.bench_split xen_blkfront.max_indirect_segments=256"
memory = 256
vcpus = 2
disk = [ "/tmp/bench.img,raw,xvda,rw" ]
vif = [ "bridge=xenbr0" ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#;

/// The domU's /init: what it is and where, on keel's serial (through the
/// kernel log, which `earlyprintk=xen keep_bootcon` sends there), then
/// power off.
pub const DOMU_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "KEEL-DOMU: $*" >/dev/kmsg; echo "KEEL-DOMU: $*"; }
say "userspace reached"
# params FILE.ko: the module's parameters from the kernel command line
# (NAME.PARAM=VALUE, NAME with '_' for '-'), as modprobe passes them.
params() {
    n=${1##*/}; n=${n%.ko}; n=${n#[0-9]*-}; n=$(echo "$n" | tr - _)
    for w in $(cat /proc/cmdline); do case "$w" in "$n".*=*) echo "${w#"$n".}" ;; esac; done
}
for m in /lib/modules/[0-9]*.ko; do
    # keel.badfront: its disks' frontends are keel-bad-frontend's, not blkfront's.
    case "$m" in *xen-blkfront.ko) grep -q keel.badfront /proc/cmdline && continue ;; esac
    insmod "$m" $(params "$m") || say "insmod $m failed"
done
say "/sys/hypervisor/type = $(cat /sys/hypervisor/type 2>&1)"
say "cpus online: $(cat /sys/devices/system/cpu/online)"
say "memory: $(awk '/MemTotal/ { print $2 " " $3 }' /proc/meminfo)"
# unrestricted=1: Debian's kernel restricts privcmd in a domU to the
# hypercalls of a device model, refusing every other with -EPERM itself;
# the isolation checks below must reach keel, which must refuse them.
insmod /lib/modules/xen-privcmd.ko unrestricted=1
insmod /lib/modules/xenfs.ko
mkdir -p /proc/xen && mount -t xenfs xenfs /proc/xen
say "domid from xenstore: $(xenstore-read domid 2>&1)"
say "name from xenstore: $(xenstore-read name 2>&1)"
# Isolation: the toolstack's hypercalls are dom0's alone.
for c in list info "destroy 1" "unpause 1"; do
    keelctl $c >/tmp/out 2>&1
    say "keelctl $c: exit $? ($(grep -c 'not privileged' /tmp/out) refusal)"
done
# ... and so are grants not given to it: dom0's refs 0-7 (dom0 grants
# nothing to a domU), and its own console and xenstore grants (given to
# dom0, not to itself). keel-grant-probe exits 0 when all were refused.
keel-grant-probe 0 0 1 2 3 4 5 6 7 >/tmp/out 2>&1
say "grant probe of dom0's refs 0-7: exit $? ($(grep -c 'status -' /tmp/out) refused)"
while read -r l; do say "grant probe: $l"; done </tmp/out
keel-grant-probe "$(xenstore-read domid)" 0 1 >/tmp/out 2>&1
say "grant probe of its own refs 0-1: exit $? ($(grep -c 'status -' /tmp/out) refused)"
while read -r l; do say "grant probe: $l"; done </tmp/out
# keel.net: its eth0 (netfront, from dom0's netback on the bridge xenbr0)
# as 10.99.0.2. Each boot (round $1): ping dom0 (10.99.0.1), serve 100 MiB
# to dom0 (busybox httpd, a CGI that writes them), say so in its xenstore
# (data/net-ready), and wait until dom0 has pinged and fetched
# (data/net-done).
net_round() {
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    ip addr add 10.99.0.2/24 dev eth0 && ip link set eth0 up
    say "net: boot $1: eth0 $(cat /sys/class/net/eth0/address 2>&1) up: exit $?"
    i=0
    until ping -c 1 -W 1 10.99.0.1 >/dev/null 2>&1 || [ $i -ge 30 ]; do i=$((i + 1)); done
    if [ $i -lt 30 ]; then say "net: boot $1: dom0 answers ping"; else say "net: boot $1: no answer from dom0"; fi
    mkdir -p /www/cgi-bin
    printf '#!/bin/sh\necho "Content-Type: application/octet-stream"\necho\nyes keel-net-test | head -c 104857600\n' >/www/cgi-bin/gen
    chmod 755 /www/cgi-bin/gen
    pgrep httpd >/dev/null || httpd -p 80 -h /www
    xenstore-write data/net-ready "$1"
    i=0
    while [ "$(xenstore-read data/net-done 2>/dev/null)" != "$1" ] && [ $i -lt 1500 ]; do sleep 0.2; i=$((i + 1)); done
    say "net: boot $1: dom0 done after $((i / 5)) s"
}
# keel.ping=ME/PEER: take address ME on eth0 and ping PEER, another domU
# on the same bridge.
ping=$(sed -n 's/.*keel\.ping=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$ping" ]; then
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    ip addr add "${ping%/*}/24" dev eth0 && ip link set eth0 up
    i=0
    until ping -c 1 -W 1 "${ping#*/}" >/dev/null 2>&1 || [ $i -ge 30 ]; do i=$((i + 1)); done
    if [ $i -lt 30 ]; then say "net: ${ping%/*} pings ${ping#*/}: answered"; else say "net: ${ping%/*} pings ${ping#*/}: no answer"; fi
fi
# keel.attach (its second boot): dom0 hot-plugs a second disk (xvdb),
# which it mounts and writes, then unplugs it; then a second interface
# (eth1, 10.99.1.2 in a subnet of its own), which must reach dom0
# (10.99.1.1). Each step is reported in its xenstore (data/xvdb-done,
# data/eth1-done) for dom0.
attach_round() {
    i=0
    # dom0 first runs the bad frontend's domU, then attaches xvdb.
    while [ ! -b /dev/xvdb ] && [ $i -lt 3000 ]; do sleep 0.2; i=$((i + 1)); done
    say "attach: xvdb $(cat /sys/block/xvdb/size 2>&1) sectors after $((i / 5)) s"
    mkdir -p /mnt2
    if mount -t ext4 /dev/xvdb /mnt2; then
        echo "hot-plugged into $(xenstore-read name)" >/mnt2/hot
        sync
        umount /mnt2
        say "attach: xvdb mounted, written, unmounted"
    else
        say "attach: mount of xvdb failed"
    fi
    xenstore-write data/xvdb-done 1
    # Only the interface an address is on answers ARP for it.
    echo 1 >/proc/sys/net/ipv4/conf/all/arp_ignore
    i=0
    while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
    ip addr add 10.99.1.2/24 dev eth1 && ip link set eth1 up
    say "attach: eth1 $(cat /sys/class/net/eth1/address 2>&1) up after $((i / 5)) s"
    i=0
    until ping -I eth1 -c 1 -W 1 10.99.1.1 >/dev/null 2>&1 || [ $i -ge 30 ]; do i=$((i + 1)); done
    if [ $i -lt 30 ]; then say "attach: dom0 answers ping on eth1"; else say "attach: no answer on eth1"; fi
    xenstore-write data/eth1-done 1
    # dom0 unplugs it again (network-detach): netfront closes, eth1 goes.
    i=0
    while [ -e /sys/class/net/eth1 ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
    if [ -e /sys/class/net/eth1 ]; then say "attach: eth1 still there"; else say "attach: eth1 gone after $((i / 5)) s"; fi
    # Meanwhile another domU ("bad") wrote garbage into its block ring:
    # this one's disk and network must still work.
    if mount -t ext4 /dev/xvda /mnt && echo "after the bad frontend" >/mnt/after && sync && [ "$(cat /mnt/after)" = "after the bad frontend" ] && umount /mnt; then
        say "attach: xvda still works"
    else
        say "attach: xvda failed"
    fi
    if ping -c 1 -W 5 10.99.0.1 >/dev/null 2>&1; then say "attach: eth0 still works"; else say "attach: eth0 failed"; fi
    # dom0 reads this round's lines from the console once it is done.
    xenstore-write data/attach-done 1
}
# keel.bench_split (the split-driver bench, BENCH_CFG; dom0's side is in
# its init script): whenever dom0 says go (data/go = a round number), it
# writes its whole xvda, then reads it back (dd bs=1M with O_DIRECT: every
# byte through blkfront, none from its own page cache), says so (data/
# disk-done = the round: dom0 reads keel's counters), and once dom0 says
# data/tcp-go = the round, sends as many bytes to dom0 over TCP (busybox
# nc to 10.99.0.1:5001, dom0 listening), each timed with its own clock;
# "MS EXIT MIB" of each in data/disk-write, data/disk-read and data/tcp,
# then data/done = the round. data/go = end: it powers off.
if grep -q keel.bench_split /proc/cmdline; then
    # $ns: the kernel's monotonic clock in ns ("now at N nsecs" in
    # /proc/timer_list; /proc/uptime, 10 ms, if that is not there), read
    # by the shell itself: no process starts inside a timed span.
    stamp() {
        ns=
        [ -r /proc/timer_list ] && { read -r l; read -r l; read -r l l ns l; } </proc/timer_list
        case "$ns" in
        "" | *[!0-9]*)
            read -r up l </proc/uptime
            ns=$(( ${up%.*} * 1000000000 + (1${up#*.} - 100) * 10000000 ))
            ;;
        esac
    }
    # timed CMD...: $took (ms) and $rc of CMD.
    timed() { stamp; t0=$ns; "$@"; rc=$?; stamp; took=$(( (ns - t0) / 1000000 )); }
    i=0
    while { [ ! -b /dev/xvda ] || [ ! -e /sys/class/net/eth0 ]; } && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    mib=$(( $(cat /sys/block/xvda/size 2>/dev/null || echo 0) / 2048 ))
    ip addr add 10.99.0.2/24 dev eth0 && ip link set eth0 up
    i=0
    until ping -c 1 -W 1 10.99.0.1 >/dev/null 2>&1 || [ $i -ge 60 ]; do i=$((i + 1)); done
    if [ $i -lt 60 ]; then say "bench-split: xvda $mib MiB, dom0 answers ping"; else say "bench-split: xvda $mib MiB, no answer from dom0"; fi
    send() { dd if=/dev/zero bs=64k count=$((mib * 16)) 2>/dev/null | nc 10.99.0.1 5001 >/dev/null; }
    xenstore-write data/ready 1
    last=
    while :; do
        go=$(xenstore-read data/go 2>/dev/null)
        [ "$go" = end ] && break
        if [ -n "$go" ] && [ "$go" != "$last" ]; then
            timed dd if=/dev/zero of=/dev/xvda bs=1M count=$mib oflag=direct 2>/dev/null
            xenstore-write data/disk-write "$took $rc $mib"
            w="$took ms exit $rc"
            timed dd if=/dev/xvda of=/dev/null bs=1M count=$mib iflag=direct 2>/dev/null
            xenstore-write data/disk-read "$took $rc $mib"
            r="$took ms exit $rc"
            xenstore-write data/disk-done "$go"
            i=0
            while [ "$(xenstore-read data/tcp-go 2>/dev/null)" != "$go" ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
            timed send
            xenstore-write data/tcp "$took $rc $mib"
            say "bench-split: round $go: write $w, read $r, tcp $took ms exit $rc"
            last=$go
            xenstore-write data/done "$go"
        else
            sleep 1
        fi
    done
fi
if grep -q keel.disk /proc/cmdline; then
    # Its xvda (blkfront, from dom0's blkback): an ext4 file system in
    # which it counts its boots; the first boot is rebooted by dom0
    # (on_reboot restarts it), the second finds the count there and goes on.
    i=0
    while [ ! -b /dev/xvda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    say "disk: xvda $(cat /sys/block/xvda/size 2>&1) sectors, ro $(cat /sys/block/xvda/ro 2>&1)"
    mkdir -p /mnt
    if mount -t ext4 /dev/xvda /mnt; then
        n=$(cat /mnt/boots 2>/dev/null)
        n=$((${n:-0} + 1))
        echo "$n" >/mnt/boots
        echo "written by boot $n of $(xenstore-read name)" >/mnt/note
        sync
        say "disk: boot $n: mounted xvda, boots=$n written"
        umount /mnt
        grep -q keel.net /proc/cmdline && net_round "$n"
        [ "$n" = 2 ] && grep -q keel.attach /proc/cmdline && attach_round
        if [ "$n" = 1 ]; then
            # dom0 reboots it (keelctl reboot: xenstore control/shutdown;
            # Linux restarts at once, its disk written and unmounted).
            say "disk: waiting for dom0 to reboot it"
            sleep 600
        fi
    else
        say "disk: mount of xvda failed"
    fi
fi
# keel.badfront: no blkfront; keel-bad-frontend plays the frontend of
# its disk, badly: garbage requests in the ring of xvda, then a producer
# index far ahead. dom0's blkback must answer with errors and then stop
# serving this device alone. (Its bad-ref mode, a ring page never
# granted, is not run: Linux 6.1's blkback WARNs on the disconnect after
# that failed map: docs/testing.md, qemu-amd-domu-disk.)
if grep -q keel.badfront /proc/cmdline; then
    keel-bad-frontend garbage device/vbd/51712 1 >/tmp/out 2>&1
    rc=$?
    while read -r l; do say "$l"; done </tmp/out
    say "bad-frontend: garbage exit $rc"
fi
if grep -q keel.life /proc/cmdline; then
    # The lifecycle scenarios (LIFE_CFG): stay up until dom0 shuts it
    # down (Linux runs /sbin/poweroff) or reboots it, or asks it (its
    # xenstore's data/crash) to panic or to read memory outside its own,
    # which keel must end it for. No kernel log on keel's serial: the
    # panic is expected, and is read from keel-consoled's log by dom0.
    mkdir -p /sbin
    printf '#!/bin/busybox sh\nexec /bin/busybox poweroff -f\n' >/sbin/poweroff
    chmod 755 /sbin/poweroff
    # keel.busy: a CPU-bound loop, whose CPU time pause must stop.
    if grep -q keel.busy /proc/cmdline; then while :; do :; done & fi
    echo "KEEL-DOMU: ready"
    n=0
    while :; do
        case "$(xenstore-read data/crash 2>/dev/null)" in
        panic)
            echo "KEEL-DOMU: panicking (echo c > /proc/sysrq-trigger)"
            echo c >/proc/sysrq-trigger
            ;;
        outside)
            # Guest-physical 1 GiB, past its RAM: nothing there. busybox
            # devmem maps /dev/mem (read() stops at the end of RAM).
            echo "KEEL-DOMU: reading guest-physical 0x40000000 (outside its memory)"
            devmem 0x40000000 32
            echo "KEEL-DOMU: read outside its memory: exit $?"
            ;;
        esac
        sleep 1
        n=$((n + 1))
        [ $((n % 5)) = 0 ] && echo "KEEL-DOMU: alive $n"
    done
fi
say "powering off"
poweroff -f
"#;

/// The disk scenario's misbehaving domU (`/etc/keel/bad.cfg`): a disk
/// whose frontend is `keel-bad-frontend` (`keel.badfront`), which writes
/// garbage into its ring; it powers off after.
pub const BAD_CFG: &str = r#"# A PVH domU with a broken block frontend.
name = "bad"
type = "pvh"
kernel = "/usr/lib/keel/domu/vmlinuz"
ramdisk = "/usr/lib/keel/domu/initrd.gz"
extra = "console=hvc0 earlyprintk=xen keep_bootcon loglevel=4 keel.badfront"
memory = 128
vcpus = 1
disk = [ "/tmp/bad1.img,raw,xvda,rw" ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#;

/// The lifecycle scenarios' domU (`/etc/keel/life.cfg`; dom0's script
/// names each copy): the same kernel and initramfs, 128 MiB and one vCPU
/// so that three fit beside dom0, `keel.life` keeps its /init up, and
/// each shutdown code has its action: power-off destroys it, reboot and
/// crash start it again. No `earlyprintk=xen`: its console goes to
/// keel-consoled only.
pub const LIFE_CFG: &str = r#"# A PVH domU that stays up until told otherwise.
name = "life"
type = "pvh"
kernel = "/usr/lib/keel/domu/vmlinuz"
ramdisk = "/usr/lib/keel/domu/initrd.gz"
extra = "console=hvc0 loglevel=4 keel.life"
memory = 128
vcpus = 1
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "restart"
"#;

/// Where the domU's files go in dom0.
pub const DOMU_DIR: &str = "usr/lib/keel/domu";

/// The domU's kernel modules: privcmd and xenfs, which its /init loads
/// itself (privcmd unrestricted), and [`DOMU_MODULES`]' files, in order.
pub struct DomuModules<'a> {
    pub privcmd: &'a [u8],
    pub xenfs: &'a [u8],
    pub first: &'a [Vec<u8>],
}

/// The domU's initramfs (uncompressed): busybox with its applets, xenfs,
/// Debian's xenstore-read and -write and what they link against, `bins`
/// in /bin (keelctl, which must be refused there, keel-grant-probe,
/// keel-bad-frontend), /init.
pub fn domu_initramfs(
    busybox: &[u8],
    applets: &[&str],
    modules: &DomuModules,
    xen: &BTreeMap<String, Entry>,
    bins: &[(&str, &[u8])],
) -> Vec<u8> {
    let mut c = Cpio::default();
    let mut dirs: BTreeSet<String> = ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    dirs.extend(xentools::dirs(xen));
    for d in &dirs {
        c.dir(d);
    }
    c.chardev("dev/console", 0o600, 5, 1);
    c.file("bin/busybox", 0o755, busybox);
    for (name, data) in bins {
        c.file(&format!("bin/{name}"), 0o755, data);
    }
    for a in applets {
        c.symlink(&format!("bin/{a}"), "busybox");
    }
    for (path, e) in xen {
        match e {
            Entry::File { perm, data } => c.file(path, *perm, data),
            Entry::Symlink(t) => c.symlink(path, t),
        }
    }
    // xenfs needs privcmd's symbols.
    c.file("lib/modules/xen-privcmd.ko", 0o644, modules.privcmd);
    c.file("lib/modules/xenfs.ko", 0o644, modules.xenfs);
    // The rest numbered in load order (`/init` loads them first).
    for (i, (m, ko)) in DOMU_MODULES.iter().zip(modules.first).enumerate() {
        let name = m.rsplit('/').next().unwrap_or(m);
        c.file(&format!("lib/modules/{i:02}-{name}"), 0o644, ko);
    }
    c.file("init", 0o755, DOMU_INIT.as_bytes());
    c.finish()
}

/// The archive appended to dom0's initramfs: the domU's kernel, its
/// (compressed) initramfs and its config, with their directories.
pub fn dom0_addition(vmlinuz: &[u8], domu_initrd_gz: &[u8]) -> Vec<u8> {
    let mut c = Cpio::default();
    for d in [
        "etc",
        "etc/keel",
        "usr",
        "usr/lib",
        "usr/lib/keel",
        DOMU_DIR,
    ] {
        c.dir(d);
    }
    c.file(&format!("{DOMU_DIR}/vmlinuz"), 0o644, vmlinuz);
    c.file(&format!("{DOMU_DIR}/initrd.gz"), 0o644, domu_initrd_gz);
    for (path, text) in CONFIGS {
        c.file(path, 0o644, text.as_bytes());
    }
    c.finish()
}

/// The domU configs in dom0 (path, text): in [`dom0_addition`], and in
/// the cached initramfs' stamp (a changed config builds it again).
pub const CONFIGS: [(&str, &str); 6] = [
    ("etc/keel/domu.cfg", DOMU_CFG),
    ("etc/keel/life.cfg", LIFE_CFG),
    ("etc/keel/disk.cfg", DISK_CFG),
    ("etc/keel/net2.cfg", NET2_CFG),
    ("etc/keel/bad.cfg", BAD_CFG),
    ("etc/keel/bench.cfg", BENCH_CFG),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_parses_as_a_pvh_domain_with_its_files() {
        let p = keel_xlcfg::parse_str(DOMU_CFG, "domu.cfg").unwrap();
        let c = &p.config;
        assert_eq!(c.guest_type, keel_xlcfg::GuestType::Pvh);
        assert_eq!(c.kernel.as_deref(), Some("/usr/lib/keel/domu/vmlinuz"));
        assert_eq!(c.ramdisk.as_deref(), Some("/usr/lib/keel/domu/initrd.gz"));
        assert_eq!((c.memory_mb, c.vcpus), (Some(256), 2));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn the_lifecycle_config_restarts_on_reboot_and_crash() {
        use keel_xlcfg::Action;
        let p = keel_xlcfg::parse_str(LIFE_CFG, "life.cfg").unwrap();
        let c = &p.config;
        assert_eq!((c.memory_mb, c.vcpus), (Some(128), 1));
        assert_eq!(
            (c.on_poweroff, c.on_reboot, c.on_crash),
            (Action::Destroy, Action::Restart, Action::Restart)
        );
        assert!(c
            .cmdline
            .as_deref()
            .is_some_and(|l| l.contains("keel.life")));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn the_disk_config_has_one_writable_xvda_from_an_image_file() {
        let p = keel_xlcfg::parse_str(DISK_CFG, "disk.cfg").unwrap();
        let c = &p.config;
        assert_eq!(c.disks.len(), 1);
        let d = &c.disks[0];
        assert_eq!(d.vdev, "xvda");
        assert_eq!(d.target.as_deref(), Some("/tmp/disk.img"));
        assert_eq!(d.access, keel_xlcfg::DiskAccess::ReadWrite);
        assert!(c
            .cmdline
            .as_deref()
            .is_some_and(|l| l.contains("keel.disk") && l.contains("keel.net")));
        assert_eq!(c.vifs.len(), 1);
        assert_eq!(c.vifs[0].bridge.as_deref(), Some("xenbr0"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn the_second_net_domain_pings_the_disk_domain_on_the_same_bridge() {
        let p = keel_xlcfg::parse_str(NET2_CFG, "net2.cfg").unwrap();
        let c = &p.config;
        assert!(c.disks.is_empty());
        assert_eq!(c.vifs.len(), 1);
        assert_eq!(c.vifs[0].bridge.as_deref(), Some("xenbr0"));
        assert!(c
            .cmdline
            .as_deref()
            .is_some_and(|l| l.contains("keel.ping=10.99.0.3/10.99.0.2")));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    /// The /init's params(), run by the host's sh against a command line
    /// of our own: a module gets its NAME.PARAM=VALUE words (NAME with
    /// '_' for the file name's '-', its load-order number dropped), no
    /// other module's, as modprobe would pass them.
    #[test]
    fn modules_get_their_parameters_from_the_command_line() {
        let f = DOMU_INIT
            .split_once("params() {")
            .and_then(|(_, r)| r.split_once("\n}\n"))
            .map(|(body, _)| format!("params() {{{body}\n}}\n"))
            .expect("params() in DOMU_INIT");
        let dir = std::env::temp_dir().join(format!("keel-params-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cmdline = dir.join("cmdline");
        std::fs::write(
            &cmdline,
            "console=hvc0 xen_blkfront.max_indirect_segments=256 xen_netfront.max_queues=1 xen_blkfront.x=a=b keel.disk\n",
        )
        .unwrap();
        let f = f.replace("/proc/cmdline", cmdline.to_str().unwrap());
        let run = |m: &str| {
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{f}params {m}"))
                .output()
                .unwrap();
            assert!(o.status.success(), "{o:?}");
            String::from_utf8(o.stdout).unwrap()
        };
        assert_eq!(
            run("/lib/modules/00-xen-blkfront.ko"),
            "max_indirect_segments=256\nx=a=b\n"
        );
        assert_eq!(run("/lib/modules/01-xen-netfront.ko"), "max_queues=1\n");
        assert_eq!(run("/lib/modules/08-ext4.ko"), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_bad_domain_has_a_disk_and_no_blkfront() {
        let p = keel_xlcfg::parse_str(BAD_CFG, "bad.cfg").unwrap();
        let c = &p.config;
        let vdevs: Vec<_> = c.disks.iter().map(|d| d.vdev.as_str()).collect();
        assert_eq!(vdevs, ["xvda"]);
        assert!(c.vifs.is_empty());
        assert!(c
            .cmdline
            .as_deref()
            .is_some_and(|l| l.contains("keel.badfront")));
        // Its /init skips blkfront then, and runs the bad frontend on both.
        assert!(DOMU_INIT.contains("*xen-blkfront.ko) grep -q keel.badfront"));
        assert!(DOMU_INIT.contains("keel-bad-frontend garbage device/vbd/51712"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn the_bench_config_has_the_image_as_raw_xvda_and_a_vif_on_the_bridge() {
        use keel_xlcfg::Action;
        let p = keel_xlcfg::parse_str(BENCH_CFG, "bench.cfg").unwrap();
        let c = &p.config;
        assert_eq!(c.guest_type, keel_xlcfg::GuestType::Pvh);
        assert_eq!((c.memory_mb, c.vcpus), (Some(256), 2));
        assert_eq!(c.disks.len(), 1);
        let d = &c.disks[0];
        assert_eq!(d.vdev, "xvda");
        assert_eq!(d.target.as_deref(), Some("/tmp/bench.img"));
        assert_eq!(d.format, keel_xlcfg::DiskFormat::Raw);
        assert_eq!(d.access, keel_xlcfg::DiskAccess::ReadWrite);
        assert_eq!(c.vifs.len(), 1);
        assert_eq!(c.vifs[0].bridge.as_deref(), Some("xenbr0"));
        // Its /init's bench section, and none of the other domUs' ones
        // (their flags are matched as substrings of the command line).
        let line = c.cmdline.as_deref().unwrap_or("");
        assert!(line.contains("keel.bench_split"), "{line}");
        for other in [
            "keel.disk",
            "keel.net",
            "keel.life",
            "keel.ping",
            "earlyprintk",
        ] {
            assert!(!line.contains(other), "{other} in {line}");
        }
        // Once it powers off (the bench is over) it is not started again.
        assert_eq!(
            (c.on_poweroff, c.on_reboot, c.on_crash),
            (Action::Destroy, Action::Destroy, Action::Destroy)
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert!(DOMU_INIT.contains("if grep -q keel.bench_split /proc/cmdline; then"));
    }

    #[test]
    fn the_addition_holds_the_configs_and_files() {
        let a = dom0_addition(b"BZIMAGE", b"GZ");
        let text = String::from_utf8_lossy(&a);
        for name in [
            "usr/lib/keel/domu/vmlinuz",
            "usr/lib/keel/domu/initrd.gz",
            "etc/keel/domu.cfg",
            "etc/keel/life.cfg",
            "etc/keel/disk.cfg",
            "etc/keel/net2.cfg",
            "etc/keel/bad.cfg",
            "etc/keel/bench.cfg",
            "TRAILER!!!",
        ] {
            assert!(text.contains(name), "{name}");
        }
    }
}

#!/bin/sh
# The gates' cost in a guest, as ratios to the bare call in the same boot
# (software emulation inflates absolute times): no gate, the BPF LSM gate,
# gpugate.ko alone, and both, each for a non-GPU ioctl (TCGETS on
# /dev/zero), an allowed RM control (the GPU_GET_NAME_STRING query) and a
# denied one (GPU_SET_POWER without a grant) through /dev/nvidiactl of the
# simulated driver; a one-byte write to /dev/null and a one-page mapping of
# /dev/zero (what every write and mapping on the host pays for the knob
# gate's hooks, docs/paths.md) and a sysfs store that is no GPU's knob
# ("on" to the host bridge's power/control: what every sysfs write pays
# for the module's sysfs_kf_write hook); 5 interleaved repetitions of N calls, medians. Also the
# kernel's floor for syscall tracepoints. Not part of make test: run with
#   tools/vmtest --suite gatebench
grep -q "^gpusim " /proc/modules || insmod /modules/gpusim.ko || exit 1
# 50,000 calls a workload: each config's daemon writes about 1.4 KB of
# ledger a call into the guest's RAM (/tmp), and the ledger goes after each
N=${GG_GATEBENCH_N:-50000}
nv="$GG_BIN/gpugate-nvclient"
out=/tmp/gatebench.tsv
: >"$out"
run() { # config workload
	case "$2" in
	nongpu) r=$("$nv" /dev/zero loop "$N" 0x5401) ;;
	allowed) r=$("$nv" /dev/nvidiactl loop "$N" 0xC020462A 0x20800110) ;;
	denied) r=$("$nv" /dev/nvidiactl loop "$N" 0xC020462A 0x20800112) ;;
	write) r=$("$nv" /dev/null write "$N") ;;
	mmap) r=$("$nv" /dev/zero mmap "$N") ;;
	sysfs) r=$("$nv" /sys/bus/pci/devices/0000:00:00.0/power/control write "$N" on) ;;
	esac
	echo "$1 $2 $(echo "$r" | cut -d' ' -f1)" >>"$out"
}
run_all() { # config
	run "$1" nongpu
	run "$1" allowed
	run "$1" denied
	run "$1" write
	run "$1" mmap
	run "$1" sysfs
}
daemon() { # config args...: gpugated until killed, enforcing
	cfg=$1
	shift
	rm -f /tmp/bench.json
	"$GG_BIN/gpugated" -q --mode enforce --no-pin --control-socket "" --ledger /tmp/bench-ledger \
		--status-file /tmp/bench.json "$@" >/tmp/gd.out 2>&1 &
	d=$!
	i=0
	while ! grep -q '"running"' /tmp/bench.json 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	grep -q '"mode": "enforce"' /tmp/bench.json || {
		echo "gatebench: $cfg did not enforce"
		cat /tmp/gd.out /tmp/bench.json
		free -m
		exit 1
	}
	run_all "$cfg"
	kill $d
	wait $d
	# the module holds the gate after its daemon: let it go before the next config
	"$GG_BIN/gpugated" --unload --pin-dir /sys/fs/bpf/gg-bench --ledger /tmp/bench-ledger >/dev/null 2>&1
	rm -rf /tmp/bench-ledger
}
for rep in 1 2 3 4 5; do
	run_all bare
	# the kernel's own price for syscall tracepoints (empty programs on
	# sys_enter_ioctl and sys_exit_ioctl)
	"$GG_BIN/gg-bench-attach" "$GG_BIN/../bpf/floor.bpf.o" >/tmp/floor.out 2>&1 &
	f=$!
	sleep 1
	run_all floor
	kill $f
	wait $f
	daemon lsm --kmod off
	insmod /modules/gpugate.ko mode=observe || exit 1
	daemon kmod --engine kmod
	daemon both --kmod on
	rmmod gpugate || { echo "gatebench: gpugate.ko would not unload"; exit 1; }
done
echo "gatebench raw (config workload ns/call):"
cat "$out"
median() { grep "^$1 $2 " "$out" | cut -d' ' -f3 | sort -n | sed -n 3p; }
for w in nongpu allowed denied write mmap sysfs; do
	b=$(median bare $w)
	line="gatebench $w: bare $b ns"
	for c in floor lsm kmod both; do
		v=$(median $c $w)
		line="$line, $c $v ns (x$(awk "BEGIN{printf \"%.3f\", $v/$b}"))"
	done
	echo "$line"
done
echo "suite gatebench: 1 passed, 0 failed"

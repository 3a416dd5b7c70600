#!/bin/sh
# vmtest-lsm: landlock,lockdown,yama
# gpugate.ko alone, in a kernel booted without bpf in its LSM list: no BPF
# LSM program can load (the daemon observes through tracepoints and stays
# out of the module's nodes), and the whole gating suite must still hold.
. /suites/kmod-common.sh
if grep -qw bpf /sys/kernel/security/lsm; then
	echo "suite kmod-nolsm: bpf is in this boot's LSM list; it must not be"
	exit 1
fi
run_kmod_suite kmod-nolsm kmod

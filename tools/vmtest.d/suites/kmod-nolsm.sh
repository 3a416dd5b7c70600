#!/bin/sh
# vmtest-lsm: landlock,lockdown,yama
# vmtest-accel: tcg,thread=single
# (QEMU's multi-threaded TCG was seen to run a stale translation of an
# ftrace site another vCPU had just patched: a vCPU spinning on an int3
# that was no longer in memory, while gpugate.ko unloaded under load. One
# host thread for both vCPUs translates patched code correctly.)
# gpugate.ko alone, in a kernel booted without bpf in its LSM list: no BPF
# LSM program can load (the daemon observes through tracepoints and stays
# out of the module's nodes), and the whole gating suite must still hold.
. /suites/kmod-common.sh
if grep -qw bpf /sys/kernel/security/lsm; then
	echo "suite kmod-nolsm: bpf is in this boot's LSM list; it must not be"
	exit 1
fi
run_kmod_suite kmod-nolsm kmod

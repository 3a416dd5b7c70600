#!/bin/sh
# vmtest-accel: tcg,thread=single
# (QEMU's multi-threaded TCG was seen to run a stale translation of an
# ftrace site another vCPU had just patched: a vCPU spinning on an int3
# that was no longer in memory, while gpugate.ko unloaded under load. One
# host thread for both vCPUs translates patched code correctly.)
# gpugate.ko beside the BPF LSM gate (GG_VM_GATE=both): the module decides
# the nodes its hooks cover, BPF stays out of them. The module's own tests
# (Kmod.*) and the gating tests that hold for every gate (Gate.*, as listed
# in kmod-tests.txt) run here; the LSM's own (pinning, its capture) in gpusim.
. /suites/kmod-common.sh
run_kmod_suite kmod both

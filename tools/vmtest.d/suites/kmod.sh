#!/bin/sh
# gpugate.ko beside the BPF LSM gate (GG_VM_GATE=both): the module decides
# the nodes its hooks cover, BPF stays out of them. The module's own tests
# (Kmod.*) and the gating tests that hold for every gate (Gate.*, as listed
# in kmod-tests.txt) run here; the LSM's own (pinning, its capture) in gpusim.
. /suites/kmod-common.sh
run_kmod_suite kmod both

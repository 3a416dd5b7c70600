#!/bin/sh
# The simulated NVIDIA driver on a guest kernel, gated by the BPF LSM
# (GG_VM_GATE unset: lsm): gpugated must find its nodes and record the
# driver's own answers, and the gate and its attack tests must hold. Output streams to the
# console as the tests run (a hung test shows where it hung).
grep -q "^gpusim " /proc/modules || insmod /modules/gpusim.ko || { echo "suite gpusim: insmod gpusim.ko failed"; exit 1; }
out=/tmp/vm-tests.out
rcfile=/tmp/vm-tests.rc
# the module's own tests (Kmod.*, KnobsKmod.*) run in the kmod suites, with the module loaded
{ "$GG_TESTS/gpugate_vm_tests" --gtest_color=no --gtest_filter="${GG_VM_FILTER:--Kmod.*:KnobsKmod.*}" 2>&1; echo $? >"$rcfile"; } | tee "$out"
rc=$(cat "$rcfile")
cat /sys/class/gpusim/nvidiactl/state
passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out")
failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out")
echo "suite gpusim: ${passed:-0} passed, ${failed:-0} failed"
[ "$rc" -eq 0 ] && [ -n "$passed" ]

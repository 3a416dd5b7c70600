#!/bin/sh
# The simulated NVIDIA driver on a guest kernel: load it, then gpugated must
# find its nodes and record the driver's own answers. Output streams to the
# console as the tests run (a hung test shows where it hung).
grep -q "^gpusim " /proc/modules || insmod /modules/gpusim.ko || { echo "suite gpusim: insmod gpusim.ko failed"; exit 1; }
out=/tmp/vm-tests.out
rcfile=/tmp/vm-tests.rc
{ "$GG_TESTS/gpugate_vm_tests" --gtest_color=no ${GG_VM_FILTER:+--gtest_filter=$GG_VM_FILTER} 2>&1; echo $? >"$rcfile"; } | tee "$out"
rc=$(cat "$rcfile")
cat /sys/class/gpusim/nvidiactl/state
passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out")
failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out")
echo "suite gpusim: ${passed:-0} passed, ${failed:-0} failed"
[ "$rc" -eq 0 ] && [ -n "$passed" ]

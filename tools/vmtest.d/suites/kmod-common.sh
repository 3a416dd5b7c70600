# Shared by the kmod suites: load the simulated driver and gpugate.ko (its
# own self-test first: it must gate the driver), run the tests for a gate.
# The list of gating tests that hold for every gate is kmod-tests.txt; a
# suite may leave more out with GG_KMOD_SKIP (gtest patterns, ':'-separated).
run_kmod_suite() { # suite-name gate [gtest filter; default kmod-tests.txt]
	grep -q "^gpusim " /proc/modules || insmod /modules/gpusim.ko || { echo "suite $1: insmod gpusim.ko failed"; return 1; }
	if ! grep -q "^gpugate " /proc/modules; then
		insmod /modules/gpugate.ko mode=observe || { echo "suite $1: insmod gpugate.ko failed"; dmesg | tail -20; return 1; }
	fi
	dmesg | grep gpugate
	# a kernel complaint during the tests comes with its stack on the console
	echo 7 >/proc/sys/kernel/printk
	echo 1 >/proc/sys/kernel/softlockup_all_cpu_backtrace 2>/dev/null
	# gtest: the patterns to run, then "-" and those to leave out ("-" lines)
	pos=$(grep -v -e '^#' -e '^-' /suites/kmod-tests.txt | tr '\n' ':')
	neg=$(grep '^-' /suites/kmod-tests.txt | cut -c2- | tr '\n' ':')${GG_KMOD_SKIP:+$GG_KMOD_SKIP:}
	filter=${3:-${pos%:}${neg:+-${neg%:}}}
	out=/tmp/vm-$1.out
	rcfile=/tmp/vm-$1.rc
	{ GG_VM_GATE=$2 GG_REQUIRE_IA32=1 "$GG_TESTS/gpugate_vm_tests" --gtest_color=no \
		--gtest_filter="${GG_VM_FILTER:-$filter}" 2>&1; echo $? >"$rcfile"; } | tee "$out"
	rc=$(cat "$rcfile")
	passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out")
	failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out")
	echo "suite $1: ${passed:-0} passed, ${failed:-0} failed"
	[ "$rc" -eq 0 ] && [ -n "$passed" ]
}

#!/bin/sh
# The gate's cost in a guest, as ratios to the bare call in the same boot
# (software emulation inflates absolute times): a non-GPU ioctl (TCGETS on
# /dev/zero) and an allowed ioctl on the gated device (a GPU_GET_NAME_STRING
# query through /dev/nvidiactl of the simulated driver), 5 interleaved
# repetitions of N calls each. Not part of make test: run with
#   tools/vmtest --suite gatebench
grep -q "^gpusim " /proc/modules || insmod /modules/gpusim.ko || exit 1
N=${GG_GATEBENCH_N:-200000}
nv="$GG_BIN/gpugate-nvclient"
out=/tmp/gatebench.tsv
: >"$out"
run() { # config workload
	case "$2" in
	nongpu) r=$("$nv" /dev/zero loop "$N" 0x5401) ;;
	gpu) r=$("$nv" /dev/nvidiactl loop "$N" 0xC020462A 0x20800110) ;;
	esac
	echo "$1 $2 $(echo "$r" | cut -d' ' -f1)" >>"$out"
}
for rep in 1 2 3 4 5; do
	run bare nongpu
	run bare gpu
	# the kernel's own price for syscall tracepoints (empty programs on
	# sys_enter_ioctl and sys_exit_ioctl); the gate keeps the exit one for results
	"$GG_BIN/gg-bench-attach" "$GG_BIN/../bpf/floor.bpf.o" >/tmp/floor.out 2>&1 &
	f=$!
	sleep 1
	run floor nongpu
	run floor gpu
	kill $f
	wait $f
	"$GG_BIN/gpugated" -q --mode enforce --no-pin --ledger /tmp/bench-ledger --status-file /tmp/bench.json >/tmp/gd.out 2>&1 &
	d=$!
	i=0
	while ! grep -q '"running"' /tmp/bench.json 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	grep -q '"mode": "enforce"' /tmp/bench.json || { echo "gatebench: the gate did not load"; cat /tmp/gd.out; exit 1; }
	run gate nongpu
	run gate gpu
	kill $d
	wait $d
	rm -f /tmp/bench.json
done
echo "gatebench raw (config workload ns/call):"
cat "$out"
for w in nongpu gpu; do
	b=$(grep "^bare $w " "$out" | cut -d' ' -f3 | sort -n | sed -n 3p)
	f=$(grep "^floor $w " "$out" | cut -d' ' -f3 | sort -n | sed -n 3p)
	g=$(grep "^gate $w " "$out" | cut -d' ' -f3 | sort -n | sed -n 3p)
	echo "gatebench $w: bare $b ns, tracepoint floor $f ns (x$(awk "BEGIN{printf \"%.3f\", $f/$b}")), gate $g ns (x$(awk "BEGIN{printf \"%.3f\", $g/$b}"))"
done
echo "suite gatebench: 1 passed, 0 failed"

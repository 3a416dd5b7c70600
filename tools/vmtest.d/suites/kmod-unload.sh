#!/bin/sh
# vmtest-accel: tcg,thread=single
# gpugate.ko loaded and unloaded while a thread hammers the driver. On QEMU's
# multi-threaded TCG a vCPU was seen spinning on a stale translation of an
# ftrace site another vCPU had just patched (the same registers for minutes,
# at an instruction memory no longer held: an int3 already replaced by the
# call); real CPUs serialize cross-modified code (text_poke_bp's int3 and
# sync_core), and single-threaded TCG translates patched code correctly, so
# this suite boots with it. The races of the other kmod suites need real
# parallelism and keep multi-threaded TCG.
. /suites/kmod-common.sh
run_kmod_suite kmod-unload both "Kmod.LoadAndUnloadUnderLoadLeaveNothingHooked"

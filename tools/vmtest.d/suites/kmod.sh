#!/bin/sh
# gpugate.ko beside the BPF LSM gate (GG_VM_GATE=both): the module decides
# the nodes its hooks cover, BPF stays out of them. The module's own tests
# (Kmod.*) and the gating tests that hold for every gate (Gate.*, as listed
# in kmod-tests.txt) run here; the LSM's own (pinning, its capture) in gpusim.
# Of the knob tests, those that show one verdict and one record per write
# with both gates loaded (the BPF programs leave knobs to the module) and
# the module's race; the rest are the module's alone and run in kmod-nolsm
# (each test here loads the BPF gate too: about 7 s under emulation).
. /suites/kmod-common.sh
GG_KMOD_SKIP="Knobs.EveryOtherPath*:Knobs.AGrant*:Knobs.Mappings*:Knobs.EveryDisplay*:Knobs.TheDrivers*:Knobs.EveryGated*"
run_kmod_suite kmod both

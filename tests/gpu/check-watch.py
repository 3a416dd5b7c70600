#!/usr/bin/env python3
"""check-watch.py IDLE.jsonl LOAD.jsonl BUS_IDS.txt: the checks of
tests/gpu/run-watch.sh over what `gpugate state --json` printed on a real GPU.

- every line is a JSON object whose type begins "state.";
- each GPU's first state.sample from NVML holds every NVML field the watcher
  reads (userspace/lib/watch/nvml.cpp), except those listed in MAY_BE_ABSENT,
  which NVML answers Not Supported on some GPUs (printed when absent);
- NVML's GPUs, by PCI address in sysfs form, are nvidia-smi's;
- no line is a state.unexplained record: nothing but this script's own
  workload ran, and it changes no setting.
Exits 1 with the reasons otherwise.
"""
import json
import re
import sys

# The names userspace/lib/watch/nvml.cpp gives what it reads.
NVML_FIELDS = [
    "power.limit_mw",
    "power.enforced_limit_mw",
    "power.default_limit_mw",
    "power.usage_mw",
    "clocks.sm_mhz",
    "clocks.mem_mhz",
    "clocks.sm_max_mhz",
    "clocks.applications_sm_mhz",
    "clocks.applications_mem_mhz",
    "clocks.p0_sm_min_mhz",
    "clocks.p0_sm_max_mhz",
    "clocks.event_reasons",
    "perf.pstate",
    "temperature.gpu_c",
    "ecc.current",
    "ecc.pending",
    "mig.current",
    "mig.pending",
    "persistence",
    "compute_mode",
    "pcie.generation",
    "pcie.width",
    "xid.count",
    "nvml.gpu_lost",
]

# Absent where NVML says Not Supported for the GPU at hand.
MAY_BE_ABSENT = {
    "clocks.applications_sm_mhz": "applications clocks: deprecated since NVML 13, not supported on some GPUs",
    "clocks.applications_mem_mhz": "applications clocks: deprecated since NVML 13, not supported on some GPUs",
}

SYSFS_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def sysfs_form(bus_id):
    """nvidia-smi's "00000000:1A:00.0" as sysfs names it: "0000:1a:00.0"."""
    domain, bus, rest = bus_id.strip().split(":")
    dev, fn = rest.split(".")
    return "%04x:%02x:%02x.%x" % (int(domain, 16), int(bus, 16), int(dev, 16), int(fn, 16))


def load(path, failures):
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except ValueError as e:
                failures.append("%s:%d: not JSON (%s): %.120s" % (path, n, e, line))
                continue
            if not isinstance(r, dict) or not str(r.get("type", "")).startswith("state."):
                failures.append("%s:%d: not a state.* record: %.120s" % (path, n, line))
                continue
            records.append(r)
    if not records:
        failures.append("%s: no records (gpugate state printed nothing)" % path)
    return records


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    idle_path, load_path, bus_path = sys.argv[1:]
    failures = []
    idle = load(idle_path, failures)
    loaded = load(load_path, failures)

    for path, records in ((idle_path, idle), (load_path, loaded)):
        counts = {}
        for r in records:
            counts[r["type"]] = counts.get(r["type"], 0) + 1
        print("%s: %s" % (path, ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
        for r in records:
            if r["type"] == "state.unexplained":
                failures.append(
                    "%s: state.unexplained: %s %s: %s -> %s"
                    % (path, r.get("gpu", {}).get("pci"), r.get("field"), r.get("before"), r.get("after"))
                )
            elif r["type"] == "state.explained":
                print(
                    "  explained: %s %s: %s -> %s by %s"
                    % (r.get("gpu", {}).get("pci"), r.get("field"), r.get("before"), r.get("after"),
                       r.get("explained_by", {}).get("kind"))
                )

    first = {}  # pci -> the first NVML state.sample of that GPU
    sysfs_seen = set()
    for r in idle:
        if r["type"] != "state.sample":
            continue
        pci = r.get("gpu", {}).get("pci", "")
        if r.get("source") == "nvml":
            first.setdefault(pci, r)
        elif r.get("source") == "sysfs":
            sysfs_seen.add(pci)
    if not first:
        failures.append("%s: no state.sample from NVML: was NVML opened? (log.txt has gpugate's stderr)" % idle_path)

    for pci, r in sorted(first.items()):
        values = r.get("values", {})
        if not SYSFS_ADDRESS.match(pci):
            failures.append("NVML GPU %r: PCI address not in sysfs form" % pci)
        uuid = r.get("gpu", {}).get("uuid") or ""
        if not uuid.startswith("GPU-"):
            failures.append("%s: UUID %r is not NVIDIA's GPU-... form" % (pci, uuid))
        missing = [f for f in NVML_FIELDS if f not in values and f not in MAY_BE_ABSENT]
        absent = [f for f in NVML_FIELDS if f not in values and f in MAY_BE_ABSENT]
        extra = sorted(set(values) - set(NVML_FIELDS))
        print("%s %s: %d of %d NVML fields" % (pci, uuid, len(NVML_FIELDS) - len(missing) - len(absent),
                                               len(NVML_FIELDS)))
        for f in NVML_FIELDS:
            if f in values:
                print("  %-30s %s" % (f, json.dumps(values[f])))
        for f in absent:
            print("  %-30s absent: %s" % (f, MAY_BE_ABSENT[f]))
        if missing:
            failures.append("%s: NVML fields missing from the first sample: %s" % (pci, ", ".join(missing)))
        if extra:
            print("  (fields this script does not list: %s)" % ", ".join(extra))
        if values.get("nvml.gpu_lost") is not False:
            failures.append("%s: nvml.gpu_lost is %r" % (pci, values.get("nvml.gpu_lost")))
        print("  sysfs source: %s" % ("the same GPU" if pci in sysfs_seen else "no sample of this address"))

    with open(bus_path) as f:
        smi = {sysfs_form(line) for line in f if line.strip()}
    if smi != set(first):
        failures.append("NVML's GPUs %s are not nvidia-smi's %s" % (sorted(first), sorted(smi)))

    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

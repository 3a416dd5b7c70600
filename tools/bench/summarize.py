#!/usr/bin/env python3
"""summarize.py OUT_DIR: markdown tables from observer-bench's raw files.

results.tsv: section config workload rep role n ns pid (role bare|cfg; each
cfg run has a bare run of the same workload right before its config).
checks.tsv: section config rep key=value... (recorded vs issued, losses).

A cell is median (min-max) of the config runs, the ratio to the median of
the paired bare runs, and the delta (cfg median - bare median). "Above the
floor" is, per rep, (cfg - its bare) - (floor - its bare), then the median
(min-max) over reps: this cancels host drift between the two blocks.
"""
import statistics as st
import sys
from collections import defaultdict
from pathlib import Path

out = Path(sys.argv[1])
runs = defaultdict(list)  # (sec, cfg, wl, role) -> [(rep, n, ns)]
for line in (out / "results.tsv").read_text().splitlines():
    f = line.split("\t")
    sec, cfg, wl, rep, role, n, ns = f[:7]
    busy = int(f[8]) if len(f) > 8 else 0
    runs[(sec, cfg, wl, role)].append((rep, int(n), float(ns), busy))
checks = defaultdict(list)
for line in (out / "checks.tsv").read_text().splitlines():
    f = line.split("\t")
    checks[(f[0], f[1])].append(dict(kv.split("=", 1) for kv in f[3:]))


def fmt(ns):
    return f"{ns / 1000:.1f} µs" if ns >= 10000 else f"{ns:.0f}"


def med(xs):
    return st.median(xs)


# configs measured without their own bare runs, and whose bare runs they share
BARE_OF = {("audit", "auditd-norules"): ("audit", "auditd")}


def cell(sec, cfg, wl):
    c = [r[2] for r in runs.get((sec, cfg, wl, "cfg"), [])]
    bsec, bcfg = BARE_OF.get((sec, cfg), (sec, cfg))
    b = [r[2] for r in runs.get((bsec, bcfg, wl, "bare"), [])]
    if not c or not b:
        return "—"
    mc, mb = med(c), med(b)
    noisy = " ⚠" if max(b) / min(b) > 1.5 else ""
    dist = sum(1 for r in runs.get((bsec, bcfg, wl, "bare"), []) if r[3] > 25)
    noisy += f" †{dist}" if dist else ""
    return (f"{fmt(mc)} ({fmt(min(c))}–{fmt(max(c))}) **×{mc / mb:.2f}** "
            f"Δ{mc - mb:+.0f}{noisy}")


def bare_cell(sec, cfg, wl):
    b = [r[2] for r in runs.get((sec, cfg, wl, "bare"), [])]
    return f"{fmt(med(b))} ({fmt(min(b))}–{fmt(max(b))})" if b else "—"


def n_of(sec, cfg, wl):
    r = runs.get((sec, cfg, wl, "cfg"))
    return f"{r[0][1] // 1000}k" if r else "—"


def per_rep_overhead(sec, cfg, wl):
    c = {r[0]: r[2] for r in runs.get((sec, cfg, wl, "cfg"), [])}
    b = {r[0]: r[2] for r in runs.get((sec, cfg, wl, "bare"), [])}
    return {rep: c[rep] - b[rep] for rep in c if rep in b}


def above_floor(cfg, wl):
    o = per_rep_overhead("sys", cfg, wl)
    f = per_rep_overhead("sys", "floor", wl)
    d = [o[r] - f[r] for r in o if r in f]
    return (med(d), min(d), max(d)) if d else None


def rec_summary(sec, cfg):
    cs = [c for c in checks.get((sec, cfg), []) if "issued" in c]
    if not cs:
        return "—"
    if "ledger_lines" in cs[0]:
        rec = [int(c["ledger_lines"]) for c in cs]
        lost = sum(int(c["lost"]) for c in cs)
        acct = all(int(c["seen"]) + int(c["lost"]) == int(c["issued"]) for c in cs)
        exits = sum(int(c.get("lost_exits", 0)) for c in cs)
        return (f"{min(rec)}–{max(rec)} / {cs[0]['issued']}, lost {lost}"
                f"{f' (and {exits} exit records)' if exits else ''}"
                f"{'' if acct else ' (seen+lost ≠ issued!)'}")
    if "lines" in cs[0]:
        rec = [int(c["lines"]) for c in cs]
        extra = f", Lost {sum(int(c['lost']) for c in cs)}" if "lost" in cs[0] else ""
        return f"{min(rec)}–{max(rec)} / {cs[0]['issued']}{extra}"
    return "—"


meta = (out / "meta.txt").read_text()
print("```\n" + meta.strip() + "\n```\n")

print("### Per-call cost (ns/call; median (min–max) ×ratio to paired bare, Δ = ns above paired bare)\n")
print("| configuration | N gpu | GPU-alias ioctl (/dev/full) | non-GPU ioctl (/dev/zero TCGETS) | getpid | GPU-alias recorded / issued |")
print("|---|---|---|---|---|---|")
print(f"| bare (paired with floor) | {n_of('sys', 'floor', 'gpu')} | {bare_cell('sys', 'floor', 'gpu')} | "
      f"{bare_cell('sys', 'floor', 'nongpu')} | {bare_cell('sys', 'floor', 'getpid')} | |")
rows = [("sys", "floor", "floor: empty tp programs (floor.bpf.o)"),
        ("sys", "gpugated", "**gpugated** (default)"),
        ("sys", "gpugated-nowake", "gpugated `--wakeup-kib 1048576` (diagnostic: no forced wakeups)"),
        ("sys", "bpftrace", "bpftrace, device filter, printf pid/comm/fd/cmd"),
        ("strace", "strace", "`strace -f -e trace=ioctl -o F`"),
        ("audit", "auditd-norules", "auditd running, no rules"),
        ("audit", "auditd", "auditd `-S ioctl -F a1=0xc020462a`")]
for sec, cfg, label in rows:
    if not runs.get((sec, cfg, "getpid", "cfg")):
        continue
    print(f"| {label} | {n_of(sec, cfg, 'gpu')} | {cell(sec, cfg, 'gpu')} | {cell(sec, cfg, 'nongpu')} | "
          f"{cell(sec, cfg, 'getpid')} | {rec_summary(sec, cfg)} |")
print("\n⚠ = the paired bare runs of that cell spread by more than 1.5×; †k = k of its paired bare runs saw the "
      "otherwise idle tracer CPU more than 25 % busy (someone else's work: disturbed).\n")

print("### Above the empty-program floor (per rep: (cfg − bare) − (floor − bare), median (min–max) over reps, ns)\n")
print("| configuration | GPU-alias ioctl | non-GPU ioctl | getpid |")
print("|---|---|---|---|")
for cfg in ("gpugated", "gpugated-nowake", "bpftrace"):
    cells = []
    for wl in ("gpu", "nongpu", "getpid"):
        a = above_floor(cfg, wl)
        cells.append(f"{a[0]:+.0f} ({a[1]:+.0f}…{a[2]:+.0f})" if a else "—")
    print(f"| {cfg} | " + " | ".join(cells) + " |")
print()

for sec, cfg in (("sys", "gpugated"), ("sys", "gpugated-nowake")):
    cs = checks.get((sec, cfg), [])
    if cs:
        per = [float(c["daemon_cpu_s"]) * 1e6 / max(1, int(c["records"])) for c in cs]
        print(f"- {cfg}: daemon CPU per recorded call {med(per):.1f} µs (median over reps; utime+stime / records, "
              f"includes idle polling).")
cs = checks.get(("audit", "auditd"), [])
for c in cs:
    if "kernel_lost" in c:
        print(f"- auditd: kernel lost {c['kernel_lost']}, backlog wait {c['backlog_wait_jiffies']} jiffies, "
              f"auditd CPU {c['auditd_cpu_s']} s over the section.")
print()

sus = checks.get(("sustained", "gpugated"), [])
if sus:
    print("### Sustained load against gpugated\n")
    print("| target rate | achieved | duration | max lag behind schedule | issued | seen + lost (kernel) | "
          "recorded (ledger) | lost | daemon CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in sus:
        target = meta.split("rate=")[1].split()[0]
        print(f"| {target}/s | {float(c['achieved']):.0f}/s | {c['elapsed_s']} s | "
              f"{c['max_lag_ms']} ms | {c['issued']} | {int(c['seen']) + int(c['lost'])} | {c['ledger_lines']} | "
              f"{c['lost']} ({100 * int(c['lost']) / max(1, int(c['issued'])):.1f} %) | {c['daemon_cpu_s']} s |")
    print()

tgt = checks.get(("target", "gpugated"), [])
if tgt:
    print("### Issue 14's target against gpugated\n")
    print("| target rate | achieved | duration | issued | recorded (ledger) | lost | daemon CPU |")
    print("|---|---|---|---|---|---|---|")
    for c in tgt:
        print(f"| {c['rate']}/s | {float(c['achieved']):.0f}/s | {c['elapsed_s']} s | {c['issued']} | "
              f"{c['ledger_lines']} ({int(c['ledger_lines']) / max(1e-9, float(c['elapsed_s'])):.0f}/s) | "
              f"{c['lost']} ({100 * int(c['lost']) / max(1, int(c['issued'])):.1f} %) | {c['daemon_cpu_s']} s |")
    print()

micro = {}
if (out / "microbench.json").exists():
    import json
    for b in json.loads((out / "microbench.json").read_text())["benchmarks"]:
        if b.get("aggregate_name") == "median":
            micro[b["run_name"]] = b["cpu_time"] if b.get("time_unit") == "ns" else None
if micro.get("BM_PipelineToLedger"):
    base = micro["BM_PipelineToLedger"]
    print("### The daemon's CPU per record, as a ratio to the micro-benchmark of this run\n")
    print(f"`BM_PipelineToLedger` (render, hash, append, flush per 256, one core): **{base:.0f} ns** per record; "
          f"`BM_RecordAsText` (render only): {micro.get('BM_RecordAsText', 0):.0f} ns. A slower machine moves both.\n")
    print("| section | records | daemon CPU | CPU per record | ×BM_PipelineToLedger |")
    print("|---|---|---|---|---|")
    for sec, cfg in (("sys", "gpugated"), ("sustained", "gpugated"), ("target", "gpugated")):
        for c in checks.get((sec, cfg), []):
            if "records" not in c or int(c["records"]) == 0:
                continue
            per = float(c["daemon_cpu_s"]) * 1e9 / int(c["records"])
            print(f"| {sec} ({cfg}) | {c['records']} | {c['daemon_cpu_s']} s | {per:.0f} ns | ×{per / base:.2f} |")
    print()
    full = micro.get("BM_QueryRecordedInFull")
    if full:
        print("A plain query by recording level (issue 15), user space per call: "
              + ", ".join(f"{name} {micro[b]:.0f} ns (×{micro[b] / full:.3f})"
                          for name, b in (("full", "BM_QueryRecordedInFull"), ("summary", "BM_QuerySummarized"),
                                          ("count", "BM_QueryCounted")) if micro.get(b))
              + ".\n")

if runs.get(("residual", "after-audit", "gpu", "cfg")):
    print("### After auditd: the residual audit cost in this boot (3 reps)\n")
    print("| state | GPU-alias ioctl | non-GPU ioctl | getpid |")
    print("|---|---|---|---|")
    print("| `auditctl -a never,task` installed | " + " | ".join(
        bare_cell("residual", "after-audit", wl) for wl in ("gpu", "nongpu", "getpid")) + " |")
    print("| no rules, audit disabled (as left) | " + " | ".join(
        cell("residual", "after-audit", wl) for wl in ("gpu", "nongpu", "getpid")) + " |")
    print()

#!/usr/bin/env python3
"""Checks the fleet files (deploy/): the Kubernetes manifest, the Helm chart, the log shippers'
configurations and the Elasticsearch template and ingest pipeline, offline.

  check_manifests.py --gpugated BUILD/bin/gpugated [--gpugate BUILD/bin/gpugate]
                     [--source-dir DIR] [--extra-ledger DIR]...

What it does (docs/fleet.md, "Tests"):
  * yamllint (relaxed, lines up to 120, warnings fail) over the manifest and the chart's YAML;
  * the DaemonSet: privileged, hostPID, every host path it needs mounted where gpugated looks,
    the policy ConfigMap at /etc/gpugate/policy.toml and byte for byte policy/default.toml (and
    accepted by `gpugate policy check`), every argument a real option of `gpugated --help`, the
    metrics port the same in --metrics-listen, the container port, the probes, the annotations
    and the Service;
  * the Helm chart, at the text level (no Helm here, and no Go-template renderer): Chart.yaml's
    fields, every .Values reference present in values.yaml, every include defined, blocks
    balanced, the defaults equal to the manifest's, the same mounts and host paths;
  * a real ledger: gpugated (--engine sim, with the ConfigMap's policy) writes two segments;
    the globs of rsyslog, Vector and Fluent Bit match exactly its segments, their line limits
    hold its longest record; `rsyslogd -N1` accepts the rsyslog file; vector.toml parses;
  * the ingest pipeline is run over every record (a simulator of the processors it uses:
    rename, json, set, append; its `if` conditions from a fixed table) and every document it
    makes is checked against the index template's mapping (no record can be rejected) and for
    the ECS fields.

A tool it needs (yamllint, rsyslogd, PyYAML) that is missing is a failure, not a skip.
Exit 0 when every check passed, 1 otherwise.
"""

import argparse
import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

FAILED = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail and not ok else ''}")
    if not ok:
        FAILED.append(name)
    return ok


def need_tool(name, hint):
    path = shutil.which(name) or (os.path.exists(f"/usr/sbin/{name}") and f"/usr/sbin/{name}")
    check(f"tool {name} present", bool(path), f"not found: install {hint} (make deps)")
    return path


try:
    import yaml
except ImportError:  # loud: the Makefile's DEPS has python3-yaml
    print("FAIL PyYAML missing: apt-get install python3-yaml (make deps)")
    sys.exit(1)


def get(doc, path):
    """doc at a dotted path; None when missing (or when a step is not an object)."""
    cur = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


# ---- gpugated's options ------------------------------------------------------------------


def gpugated_options(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False)
    check("gpugated --help runs", out.returncode == 0, out.stderr)
    opts = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^\s{2}(?:-\w,)?(--[\w-]+)(?:\s+(TEXT|UINT|INT|FLOAT)(?::\{[^}]*\}|:[A-Z]+(?: in \[[^\]]*\])?)?"
                     r"(?:\s+\.\.\.)?(?:=(\S+))?)?", line)
        if m:
            opts[m.group(1)] = {"value": bool(m.group(2)), "default": m.group(3)}
    return opts


def check_args(args, opts, where):
    i = 0
    ok = True
    while i < len(args):
        a = args[i]
        name = a.split("=", 1)[0]
        if not a.startswith("--") or name not in opts:
            ok = check(f"{where}: argument {a!r} is an option of gpugated --help", False,
                       "not in gpugated --help") and ok
            i += 1
            continue
        if opts[name]["value"] and "=" not in a:
            if i + 1 >= len(args):
                ok = check(f"{where}: {a} has its value", False) and ok
            i += 2
        else:
            i += 1
    check(f"{where}: every argument is an option of gpugated --help, with its value", ok)


def arg_value(args, name):
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


# ---- the manifest --------------------------------------------------------------------------

REQUIRED_HOST_PATHS = {
    # host path: (read-only in the container, hostPath type)
    "/sys/fs/bpf": (False, "DirectoryOrCreate"),   # the pinned gate outlives the pod
    "/sys/kernel/security": (True, "Directory"),   # the LSM list (doctor, self-test)
    "/sys/kernel/tracing": (True, "Directory"),    # tracepoint ids
    "/sys/fs/cgroup": (True, "Directory"),         # cgroup-scoped grants: the host's hierarchy
    "/var/lib/gpugate": (False, "DirectoryOrCreate"),  # the ledger and the log key
    "/run/gpugate": (False, "DirectoryOrCreate"),  # control socket, status.json
    "/dev": (False, "Directory"),                  # GPU nodes, /dev/gpugate
    "/etc/machine-id": (True, "File"),             # the host id in every record
    "/lib/modules": (True, "Directory"),           # doctor: gpugate.ko built for this kernel
    "/boot": (True, "Directory"),                  # doctor: the kernel's config
}


def check_manifest(path, policy_text, opts, gpugate_bin, tmp):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = {d["kind"]: d for d in docs}
    check("manifest: Namespace, ServiceAccount, ConfigMap, DaemonSet, Service",
          set(kinds) == {"Namespace", "ServiceAccount", "ConfigMap", "DaemonSet", "Service"}, str(list(kinds)))
    ns = kinds["Namespace"]["metadata"]["name"]
    check("manifest: every object in the namespace",
          all(d["metadata"].get("namespace") == ns for d in docs if d["kind"] != "Namespace"))
    check("manifest: the namespace admits privileged pods",
          kinds["Namespace"]["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "privileged")
    ds = kinds["DaemonSet"]
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    check("daemonset: selector matches the pod's labels",
          all(spec["template"]["metadata"]["labels"].get(k) == v
              for k, v in spec["selector"]["matchLabels"].items()))
    check("daemonset: hostPID", pod.get("hostPID") is True)
    check("daemonset: hostNetwork false", pod.get("hostNetwork") is False)
    check("daemonset: the service account, no API token",
          pod.get("serviceAccountName") == kinds["ServiceAccount"]["metadata"]["name"]
          and pod.get("automountServiceAccountToken") is False)
    us = spec.get("updateStrategy", {})
    check("daemonset: RollingUpdate, maxUnavailable 1, maxSurge 0 (never two daemons on a node)",
          us.get("type") == "RollingUpdate" and us.get("rollingUpdate", {}).get("maxUnavailable") == 1
          and us.get("rollingUpdate", {}).get("maxSurge") == 0, str(us))
    check("daemonset: terminationGracePeriodSeconds >= 30 (time to checkpoint)",
          pod.get("terminationGracePeriodSeconds", 30) >= 30)
    check("daemonset: nodeSelector and tolerations for GPU nodes",
          bool(pod.get("nodeSelector")) and bool(pod.get("tolerations")))
    containers = pod["containers"]
    check("daemonset: one container", len(containers) == 1)
    c = containers[0]
    check("container: privileged", c.get("securityContext", {}).get("privileged") is True)
    check("container: command gpugated", c.get("command") == ["gpugated"], str(c.get("command")))
    args = c.get("args", [])
    check_args(args, opts, "container")
    check("container: no --journald (no journald in a container: lines go to stderr)", "--journald" not in args)

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for host, (ro, typ) in REQUIRED_HOST_PATHS.items():
        vol = next((v for v in volumes.values() if v.get("hostPath", {}).get("path") == host), None)
        if not check(f"hostPath {host}: a volume of type {typ}", vol is not None and vol["hostPath"].get("type") == typ,
                     str(vol)):
            continue
        m = mounts.get(host)
        check(f"hostPath {host}: mounted at {host}{' read-only' if ro else ' writable'}",
              m is not None and m["name"] == vol["name"] and bool(m.get("readOnly")) == ro, str(m))
    check("bpffs: mountPropagation Bidirectional (a bpffs the pod mounts is the host's)",
          mounts.get("/sys/fs/bpf", {}).get("mountPropagation") == "Bidirectional")
    # Where gpugated writes and looks, by its defaults (--help) or the arguments: under a mount.
    for opt, writable in (("--state-dir", True), ("--ledger", True), ("--status-file", True),
                          ("--control-socket", True), ("--pin-dir", True), ("--kmod-device", False)):
        where = arg_value(args, opt) or (opts.get(opt) or {}).get("default") or ""
        under = [mp for mp in mounts if where == mp or where.startswith(mp.rstrip("/") + "/")]
        best = max(under, key=len) if under else None
        check(f"{opt} {where}: on a host mount{' that is writable' if writable else ''}",
              best is not None and (not writable or not mounts[best].get("readOnly")), str(best))
    names = [m["name"] for m in c["volumeMounts"]]
    check("every mount names a volume", all(n in volumes for n in names), str(names))

    policy_path = arg_value(args, "--policy")
    check("container: --policy /etc/gpugate/policy.toml", policy_path == "/etc/gpugate/policy.toml", str(policy_path))
    pm = mounts.get(policy_path or "", {})
    cm = kinds["ConfigMap"]
    pv = volumes.get(pm.get("name", ""), {})
    check("policy: mounted from the ConfigMap, key policy.toml",
          pv.get("configMap", {}).get("name") == cm["metadata"]["name"] and pm.get("subPath") == "policy.toml"
          and pm.get("readOnly") is True, f"{pm} {pv}")
    cm_policy = cm["data"].get("policy.toml", "")
    check("policy: the ConfigMap's policy.toml is policy/default.toml byte for byte", cm_policy == policy_text)
    pfile = os.path.join(tmp, "configmap-policy.toml")
    with open(pfile, "w") as f:
        f.write(cm_policy)
    r = subprocess.run([gpugate_bin, "policy", "check", pfile], capture_output=True, text=True, check=False)
    check("policy: gpugate policy check accepts the ConfigMap's policy", r.returncode == 0, r.stdout + r.stderr)

    listen = arg_value(args, "--metrics-listen") or ""
    m = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):(\d+)", listen)
    check("metrics: --metrics-listen HOST:PORT on a numeric address the pod network reaches",
          m is not None and not listen.startswith("127."), listen)
    port = int(m.group(2)) if m else -1
    ports = {p.get("name"): p for p in c.get("ports", [])}
    check("metrics: containerPort 'metrics' is the --metrics-listen port",
          ports.get("metrics", {}).get("containerPort") == port, str(ports))
    for probe in ("livenessProbe", "readinessProbe"):
        h = c.get(probe, {}).get("httpGet", {})
        check(f"metrics: {probe} GET /metrics on the metrics port",
              h.get("path") == "/metrics" and h.get("port") in ("metrics", port), str(h))
    ann = spec["template"]["metadata"].get("annotations", {})
    check("metrics: the pod's prometheus.io annotations name the port",
          ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
          and ann.get("prometheus.io/path") == "/metrics", str(ann))
    svc = kinds["Service"]
    sp = svc["spec"]
    check("service: headless, selects the pods, the metrics port",
          sp.get("clusterIP") == "None" and sp.get("selector") == spec["selector"]["matchLabels"]
          and any(p.get("port") == port and p.get("targetPort") in ("metrics", port) for p in sp.get("ports", [])),
          str(sp))
    res = c.get("resources", {})
    check("resources: requests set, no CPU limit (a throttled reader loses records)",
          "requests" in res and "cpu" not in res.get("limits", {}), str(res))
    return ds, port


# ---- the Helm chart (text level) -------------------------------------------------------------


def check_chart(chart, manifest_ds, port, policy_text):
    meta = yaml.safe_load(open(os.path.join(chart, "Chart.yaml")))
    check("chart: apiVersion v2, name, version (SemVer), appVersion, type application",
          meta.get("apiVersion") == "v2" and meta.get("name") == "gpugate"
          and re.fullmatch(r"\d+\.\d+\.\d+(?:[-+][\w.-]+)?", str(meta.get("version", ""))) is not None
          and bool(meta.get("appVersion")) and meta.get("type") == "application", str(meta))
    values = yaml.safe_load(open(os.path.join(chart, "values.yaml")))
    tdir = os.path.join(chart, "templates")
    want = {"_helpers.tpl", "daemonset.yaml", "configmap.yaml", "serviceaccount.yaml", "service.yaml", "NOTES.txt"}
    have = set(os.listdir(tdir))
    check("chart: templates " + ", ".join(sorted(want)), want <= have, str(sorted(have)))
    texts = {n: open(os.path.join(tdir, n)).read() for n in sorted(have)}
    defined = set(re.findall(r'{{-?\s*define\s+"([^"]+)"', texts.get("_helpers.tpl", "")))
    for name, text in texts.items():
        actions = re.findall(r"{{-?(.*?)-?}}", text, re.S)
        check(f"chart {name}: every {{{{ has its }}}}", text.count("{{") == len(actions) == text.count("}}"))
        opens = sum(1 for a in actions if re.match(r"\s*(if|range|with|define|block)\b", a))
        ends = sum(1 for a in actions if re.match(r"\s*end\s*$", a))
        check(f"chart {name}: blocks balanced ({opens} opened, {ends} ended)", opens == ends)
        for ref in sorted(set(re.findall(r"\.Values((?:\.\w+)+)", text))):
            path = ref[1:]
            cur, ok = values, True
            for part in path.split("."):
                if isinstance(cur, dict) and part in cur:
                    cur = cur[part]
                else:
                    ok = False
                    break
            check(f"chart {name}: .Values.{path} is in values.yaml", ok)
        for inc in sorted(set(re.findall(r'(?:include|template)\s+"([^"]+)"', text))):
            check(f"chart {name}: include {inc!r} is defined in _helpers.tpl", inc in defined)
    # The defaults render what the manifest holds.
    pod = manifest_ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    check("chart values: policy is policy/default.toml byte for byte", values.get("policy") == policy_text)
    check("chart values: metrics.port is the manifest's", values["metrics"]["port"] == port)
    check("chart values: nodeSelector, tolerations, resources, grace period as in the manifest",
          values["nodeSelector"] == pod["nodeSelector"] and values["tolerations"] == pod["tolerations"]
          and values["resources"] == c["resources"]
          and values["terminationGracePeriodSeconds"] == pod["terminationGracePeriodSeconds"]
          and values["updateStrategy"]["maxUnavailable"]
          == manifest_ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"])
    check("chart values: image tag defaults to appVersion; mode empty (the policy's own)",
          values["image"]["tag"] in ("", meta["appVersion"]) and values["mode"] in ("", None))
    dst = texts["daemonset.yaml"]

    def subst(s):  # {{ .Values.a.b }} -> its default value (only plain references)
        return re.sub(r"{{\s*\.Values((?:\.\w+)+)\s*}}", lambda m: str(get(values, m.group(1)[1:])), s)

    t_mounts = set(re.findall(r"mountPath:\s*(\S+)", dst))
    m_mounts = {m["mountPath"] for m in c["volumeMounts"]}
    check("chart daemonset: the manifest's mountPaths", t_mounts == m_mounts, f"{t_mounts ^ m_mounts}")
    t_paths = {subst(p) for p in re.findall(r"path:\s*({{[^}]*}}|\S+)", dst) if p != "/metrics"}
    m_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    check("chart daemonset: the manifest's host paths (with the default ledger/run paths)",
          t_paths == m_paths, f"{t_paths ^ m_paths}")
    for must in ("privileged: true", "hostPID: true", "hostNetwork: false", "mountPropagation: Bidirectional",
                 "subPath: policy.toml", "maxSurge: 0", "- gpugated", "- --policy", "- /etc/gpugate/policy.toml",
                 "- --metrics-listen", "containerPort: {{ .Values.metrics.port }}", "readOnlyRootFilesystem: true"):
        check(f"chart daemonset: has {must!r}", must in dst)
    check("chart configmap: the policy from values, key policy.toml",
          re.search(r"policy\.toml: \|\n\s*{{-\s*\.Values\.policy \| nindent 4\s*}}", texts["configmap.yaml"]) is not None)
    check("chart daemonset: --metrics-listen from metrics.listenAddress and metrics.port",
          '.Values.metrics.listenAddress .Values.metrics.port' in dst)


# ---- a real ledger -------------------------------------------------------------------------------


def make_ledger(gpugated, policy_file, tmp):
    script = os.path.join(tmp, "sim.jsonl")
    set_power = "0100d0c10100f0ca120180200000000090cfc7e8ff7f00000c00000000000000"
    alloc = "00000000000000000100d0c14100000000000000000000000000000000000000"
    with open(script, "w") as f:
        for i in range(1500):
            ioctl, arg = ("0xc020462a", set_power) if i % 3 == 0 else ("0xc020462b", alloc)
            f.write(json.dumps({"device": "/dev/full", "ioctl": ioctl, "arg": arg}) + "\n")
    ledger = os.path.join(tmp, "ledger")
    os.makedirs(os.path.join(tmp, "state"))
    cmd = [gpugated, "--engine", "sim", "--no-discover", "--device", "/dev/full=nvidia", "-q", "--control-socket", "",
           "--ledger", ledger, "--state-dir", os.path.join(tmp, "state"), "--status-file",
           os.path.join(tmp, "status.json"), "--sim-script", script, "--ledger-segment-mib", "1", "--watch", "off",
           "--policy", policy_file, "--mode", "monitor"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    check("ledger: gpugated (sim engine, the ConfigMap's policy) wrote a ledger", r.returncode == 0, r.stderr[-2000:])
    segs = sorted(n for n in os.listdir(ledger) if n.endswith(".jsonl"))
    check("ledger: at least two segments (rotation at 1 MiB)", len(segs) >= 2, str(os.listdir(ledger)))
    return ledger


def read_lines(ledger):
    lines = []
    for n in sorted(os.listdir(ledger)):
        if re.fullmatch(r"\d{6,}\.jsonl", n):
            with open(os.path.join(ledger, n), "rb") as f:
                lines += [ln.rstrip(b"\n") for ln in f]
    return lines


def check_globs(name, pattern, ledger, default_dir):
    d, base = os.path.split(pattern)
    check(f"{name}: the ledger directory is gpugated's default ({default_dir})", d == default_dir, d)
    present = sorted(os.listdir(ledger))
    matched = sorted(n for n in present if fnmatch.fnmatchcase(n, base))
    segs = sorted(n for n in present if re.fullmatch(r"\d{6,}\.jsonl", n))
    check(f"{name}: {base} matches exactly the ledger's segments", matched == segs and segs,
          f"matched {matched}, segments {segs}, present {present}")
    names = ["000001.jsonl", "000002.jsonl", "999999.jsonl", "1000000.jsonl"]
    check(f"{name}: {base} matches every segment name gpugated makes ({{:06}}.jsonl)",
          all(fnmatch.fnmatchcase(n, base) for n in names))
    check(f"{name}: {base} matches neither checkpoint nor checkpoint.tmp",
          not any(fnmatch.fnmatchcase(n, base) for n in ("checkpoint", "checkpoint.tmp")))


def size_bytes(s):
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]?)i?[bB]?", str(s).strip())
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()] if m else -1


def check_shippers(logdir, ledger, default_dir, longest):
    # rsyslog
    conf = os.path.join(logdir, "rsyslog-gpugate.conf")
    text = open(conf).read()
    rsyslogd = need_tool("rsyslogd", "rsyslog")
    if rsyslogd:
        r = subprocess.run([rsyslogd, "-N1", "-f", conf], capture_output=True, text=True, check=False)
        check("rsyslog: rsyslogd -N1 accepts the file", r.returncode == 0 and "error" not in (r.stdout + r.stderr).lower(),
              r.stdout + r.stderr)
    live = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    m = re.search(r'File="([^"]+)"', live)
    check_globs("rsyslog", m.group(1) if m else "", ledger, default_dir)
    for k, v in (("persistStateInterval", "1"), ("freshStartTail", "off"), ("readMode", "0"),
                 ("reopenOnTruncate", "off"), ("queue.saveOnShutdown", "on"), ("action.resumeRetryCount", "-1")):
        check(f'rsyslog: {k}="{v}"', re.search(rf'\b{re.escape(k)}="{re.escape(v)}"', live) is not None)
    m = re.search(r'maxMessageSize="([^"]+)"', live)
    check(f"rsyslog: maxMessageSize holds the longest record ({longest} bytes)",
          m is not None and size_bytes(m.group(1)) > longest)
    # Vector
    v = tomllib.load(open(os.path.join(logdir, "vector.toml"), "rb"))
    src = v["sources"]["gpugate_ledger"]
    check("vector: data_dir for checkpoints", bool(v.get("data_dir")))
    check("vector: file source, read_from beginning, checkpoints kept",
          src.get("type") == "file" and src.get("read_from") == "beginning" and not src.get("ignore_checkpoints"))
    check(f"vector: max_line_bytes holds the longest record ({longest} bytes)",
          src.get("max_line_bytes", 102400) > longest)
    check("vector: one glob", len(src.get("include", [])) == 1)
    check_globs("vector", src["include"][0], ledger, default_dir)
    tr = v["transforms"]["gpugate_records"]
    check("vector: a remap that parses JSON and drops nothing",
          tr.get("type") == "remap" and "parse_json(.message)" in tr.get("source", "")
          and tr.get("drop_on_error") is False and tr.get("inputs") == ["gpugate_ledger"])
    sink = v["sinks"]["elasticsearch"]
    ds = sink.get("data_stream", {})
    stream = f"{ds.get('type')}-{ds.get('dataset')}-{ds.get('namespace')}"
    check("vector: elasticsearch sink into a gpugate-* data stream, the gpugate-ecs pipeline, acknowledged",
          sink.get("type") == "elasticsearch" and sink.get("mode") == "data_stream"
          and fnmatch.fnmatchcase(stream, "gpugate-*") and sink.get("pipeline") == "gpugate-ecs"
          and sink.get("acknowledgements", {}).get("enabled") is True and sink.get("inputs") == ["gpugate_records"],
          stream)
    check("vector: the shipper's host name in host.name (host is an ECS object)", src.get("host_key") == "host.name")
    # Fluent Bit (classic format: [SECTION] then "Key Value" lines)
    sections = []
    for ln in open(os.path.join(logdir, "fluent-bit.conf")):
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        if re.fullmatch(r"\[[A-Z]+\]", s):
            sections.append((s[1:-1], {}))
        else:
            k, _, val = s.partition(" ")
            check(f"fluent-bit: {k!r} is inside a section, with a value", bool(sections) and val.strip() != "")
            if sections:
                sections[-1][1][k.lower()] = val.strip()
    tail = next((d for n, d in sections if n == "INPUT" and d.get("name") == "tail"), {})
    out = next((d for n, d in sections if n == "OUTPUT" and d.get("name") == "es"), {})
    check("fluent-bit: a tail input and an es output", bool(tail) and bool(out))
    check_globs("fluent-bit", tail.get("path", ""), ledger, default_dir)
    check("fluent-bit: DB for offsets, Read_from_Head On, Skip_Long_Lines Off, Mem_Buf_Limit, filesystem storage",
          bool(tail.get("db")) and tail.get("read_from_head", "").lower() == "on"
          and tail.get("skip_long_lines", "").lower() == "off" and bool(tail.get("mem_buf_limit"))
          and tail.get("storage.type") == "filesystem", str(tail))
    check(f"fluent-bit: Buffer_Max_Size holds the longest record ({longest} bytes)",
          size_bytes(tail.get("buffer_max_size", "32k")) > longest)
    check("fluent-bit: the line as message; es output into gpugate-*, create, the gpugate-ecs pipeline, retried forever",
          tail.get("key") == "message" and fnmatch.fnmatchcase(out.get("index", ""), "gpugate-*")
          and out.get("write_operation") == "create" and out.get("pipeline") == "gpugate-ecs"
          and out.get("retry_limit", "").lower() in ("no_limits", "false") and out.get("match") == tail.get("tag"),
          str(out))


# ---- the ingest pipeline, simulated, against the template ----------------------------------------

# The `if` conditions the pipeline may use, as Python over the document. A condition not here fails.
CONDITIONS = {
    "ctx.gpugate?.host_id != null && ctx.gpugate?.seq != null && ctx.gpugate?.realtime_ns != null":
        lambda d: all(get(d, f"gpugate.{k}") is not None for k in ("host_id", "seq", "realtime_ns")),
    "ctx.gpugate?.verdict == 'allowed'": lambda d: get(d, "gpugate.verdict") == "allowed",
    "ctx.gpugate?.verdict == 'denied'": lambda d: get(d, "gpugate.verdict") == "denied",
    "ctx.gpugate?.verdict == 'denied' || ctx.gpugate?.verdict == 'would-deny'":
        lambda d: get(d, "gpugate.verdict") in ("denied", "would-deny"),
    "ctx.gpugate?.verdict == 'allowed' || ctx.gpugate?.verdict == 'would-deny'":
        lambda d: get(d, "gpugate.verdict") in ("allowed", "would-deny"),
}


class ProcessorError(Exception):
    pass


def put(doc, path, value):
    cur = doc
    parts = path.split(".")
    for p in parts[:-1]:
        if p not in cur or cur[p] is None:
            cur[p] = {}
        if not isinstance(cur[p], dict):
            raise ProcessorError(f"cannot set {path}: {p} is not an object")
        cur = cur[p]
    cur[parts[-1]] = value


def render(template, doc, meta):
    def one(m):
        key = m.group(1).strip()
        v = meta.get(key) if key.startswith("_ingest.") else get(doc, key)
        if v is None:
            return ""
        return json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v)
    return re.sub(r"{{{?([^{}]+)}}}?", one, template)


def run_processor(kind, p, doc, meta):
    if kind == "rename":
        v = get(doc, p["field"])
        if v is None:
            if p.get("ignore_missing"):
                return
            raise ProcessorError(f"field [{p['field']}] not present")
        if get(doc, p["target_field"]) is not None:
            raise ProcessorError(f"field [{p['target_field']}] already exists")
        parts = p["field"].split(".")
        parent = get(doc, ".".join(parts[:-1])) if len(parts) > 1 else doc
        del parent[parts[-1]]
        put(doc, p["target_field"], v)
    elif kind == "json":
        v = get(doc, p["field"])
        if not isinstance(v, str):
            raise ProcessorError(f"field [{p['field']}] not a string")
        try:
            put(doc, p.get("target_field", p["field"]), json.loads(v))
        except json.JSONDecodeError as e:
            raise ProcessorError(f"json: {e}") from e
    elif kind == "set":
        if p.get("override", True) is False and get(doc, p["field"]) is not None:
            return
        if "copy_from" in p:
            v = copy.deepcopy(get(doc, p["copy_from"]))
            if v is None or v == "":
                if p.get("ignore_empty_value"):
                    return
                raise ProcessorError(f"field [{p['copy_from']}] not present")
        elif isinstance(p["value"], str):
            v = render(p["value"], doc, meta)
            if v == "" and p.get("ignore_empty_value"):
                return
        else:
            v = copy.deepcopy(p["value"])
        if p["field"] == "_id":
            meta["_id"] = v
        else:
            put(doc, p["field"], v)
    elif kind == "append":
        cur = get(doc, p["field"])
        vals = p["value"] if isinstance(p["value"], list) else [p["value"]]
        put(doc, p["field"], (cur if isinstance(cur, list) else ([] if cur is None else [cur])) + vals)
    else:
        raise KeyError(kind)


def run_pipeline(pipeline, source):
    doc = copy.deepcopy(source)
    meta = {"_ingest.timestamp": "2026-12-01T00:00:00.000000000Z"}

    def run_list(procs):
        for proc in procs:
            (kind, p), = proc.items()
            if "if" in p and not CONDITIONS[p["if"]](doc):
                continue
            try:
                run_processor(kind, p, doc, meta)
            except ProcessorError as e:
                if p.get("ignore_failure"):
                    continue
                if "on_failure" in p:
                    meta["_ingest.on_failure_message"] = str(e)
                    run_list(p["on_failure"])
                    continue
                raise

    try:
        run_list(pipeline["processors"])
    except ProcessorError as e:
        meta["_ingest.on_failure_message"] = str(e)
        run_list(pipeline["on_failure"])
    return doc, meta


def mapping_problems(value, mapping, path=""):
    """What Elasticsearch would reject in value under mapping (object with properties)."""
    out = []
    if not isinstance(value, dict):
        return [f"{path or '(root)'}: an object is mapped here, the value is {type(value).__name__}"]
    for k, sub in value.items():
        m = mapping.get("properties", {}).get(k)
        p = f"{path}.{k}" if path else k
        if m is None or sub is None:
            continue  # unmapped (dynamic false): kept in _source, not indexed
        t = m.get("type", "object")
        items = sub if isinstance(sub, list) else [sub]
        for it in items:
            if it is None:
                continue
            if t == "object":
                out += mapping_problems(it, m, p)
            elif isinstance(it, (dict, list)):
                out.append(f"{p}: {t} is mapped here, the value is {type(it).__name__}")
            elif t == "long" and not (isinstance(it, int) and not isinstance(it, bool) and -2**63 <= it < 2**63):
                out.append(f"{p}: long is mapped here, the value is {it!r}")
            elif t in ("date", "date_nanos") and not re.fullmatch(
                    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", str(it)):
                out.append(f"{p}: {t} is mapped here, the value is {it!r}")
    return out


def mapped(mapping, path):
    cur = mapping
    for part in path.split("."):
        cur = cur.get("properties", {}).get(part)
        if cur is None:
            return None
    return cur


def check_ecs(logdir, ledgers):
    tpl = json.load(open(os.path.join(logdir, "gpugate-ecs-template.json")))
    pipe = json.load(open(os.path.join(logdir, "gpugate-ecs-pipeline.json")))
    check("template: index_patterns gpugate-*, a data stream",
          tpl.get("index_patterns") == ["gpugate-*"] and tpl.get("data_stream") == {})
    settings = tpl["template"]["settings"]
    check("template: the default pipeline is gpugate-ecs (the name the shippers use)",
          settings.get("index.default_pipeline") == "gpugate-ecs")
    mp = tpl["template"]["mappings"]
    check("template: dynamic false (an unmapped member can never get a record rejected)",
          mp.get("dynamic") is False and mp["properties"]["gpugate"].get("dynamic") is False)
    want = {"@timestamp": "date_nanos", "event.action": "keyword", "event.outcome": "keyword",
            "event.original": "keyword", "event.sequence": "long", "process.pid": "long", "process.name": "keyword",
            "process.executable": "keyword", "process.thread.id": "long", "user.id": "keyword", "host.id": "keyword",
            "host.boot.id": "keyword", "observer.vendor": "keyword", "observer.product": "keyword",
            "observer.type": "keyword", "gpugate.class": "keyword", "gpugate.command": "keyword",
            "gpugate.seq": "long", "gpugate.pci": "keyword", "gpugate.grant_id": "keyword",
            "gpugate.verdict": "keyword", "gpugate.realtime_ns": "long"}
    for path, t in want.items():
        m = mapped(mp, path)
        check(f"template: {path} mapped as {t}", m is not None and m.get("type") == t, str(m))
    kinds = {k for proc in pipe["processors"] + pipe["on_failure"] for k in proc}
    check("pipeline: only processors the simulator knows (rename, json, set, append)",
          kinds <= {"rename", "json", "set", "append"}, str(kinds))
    conds = [p["if"] for proc in pipe["processors"] for p in proc.values() if "if" in p]
    check("pipeline: every if condition is one the simulator knows", all(c in CONDITIONS for c in conds),
          str([c for c in conds if c not in CONDITIONS]))
    if FAILED:
        return
    counts = {"records": 0}
    problems, ecs_bad, ids = [], [], set()
    for ledger in ledgers:
        for line in read_lines(ledger):
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn line (named by the ledger.recovered record after it): see below
            counts["records"] += 1
            doc, meta = run_pipeline(pipe, {"message": line.decode("utf-8"), "log": {"offset": 0}})
            problems += [f"seq {rec.get('seq')}: {p}" for p in mapping_problems(doc, mp)]
            if "tags" in doc or "error" in doc:
                ecs_bad.append(f"seq {rec.get('seq')}: pipeline error {doc.get('error')}")
            want_id = f"{rec['host_id']}-{rec['seq']}-{rec['realtime_ns']}"
            ids.add(meta.get("_id"))
            checks = {
                "_id host_id-seq-realtime_ns": meta.get("_id") == want_id,
                "event.original is the line": get(doc, "event.original") == line.decode("utf-8"),
                "@timestamp": get(doc, "@timestamp") == rec["time"],
                "event.action": get(doc, "event.action") == rec["type"],
                "event.sequence": get(doc, "event.sequence") == rec["seq"],
                "host.id": get(doc, "host.id") == rec["host_id"],
                "observer": get(doc, "observer.vendor") == "gpugate",
                "gpugate.seq": get(doc, "gpugate.seq") == rec["seq"],
            }
            if rec["type"] == "ioctl":
                v = rec["verdict"]
                checks.update({
                    "event.outcome": get(doc, "event.outcome") == {"allowed": "success", "would-deny": "success",
                                                                   "denied": "failure"}[v],
                    "event.type": get(doc, "event.type") == (["allowed"] if v == "allowed" else ["denied"]),
                    "process.pid": get(doc, "process.pid") == rec["process"]["pid"],
                    "process.name": get(doc, "process.name") == rec["process"]["comm"],
                    "process.executable": get(doc, "process.executable") == rec["process"]["exe"],
                    "user.id": get(doc, "user.id") == str(rec["process"]["uid"]),
                    "gpugate.class": get(doc, "gpugate.class") == rec["decoded"]["class"],
                    "gpugate.command": get(doc, "gpugate.command") == rec["decoded"]["command"],
                    "gpugate.grant_id": get(doc, "gpugate.grant_id") == (rec["grant"] or {}).get("id",
                                                                                                rec.get("grant_id")),
                })
            if isinstance(rec.get("gpu"), dict) and rec["gpu"].get("pci"):
                checks["gpugate.pci"] = get(doc, "gpugate.pci") == rec["gpu"]["pci"]
            ecs_bad += [f"seq {rec['seq']} ({rec['type']}): {k}" for k, ok in checks.items() if not ok]
    check(f"pipeline over {counts['records']} records: every document fits the template's mapping",
          counts["records"] > 0 and not problems, "; ".join(problems[:10]))
    check("pipeline: every record gets its ECS fields and _id host_id-seq-realtime_ns, and no pipeline error",
          not ecs_bad, "; ".join(ecs_bad[:10]))
    check("pipeline: one _id per record (over every ledger given)", len(ids) == counts["records"])
    # A torn line (a crash cut a write short; gpugated terminates and keeps it) is shipped, tagged.
    torn = '{"seq":7,"prev":"00","type":"ioc'
    doc, meta = run_pipeline(pipe, {"message": torn})
    check("pipeline: a torn line is kept (event.original), tagged, timestamped, with no _id of a record",
          get(doc, "event.original") == torn and "gpugate_not_a_record" in doc.get("tags", [])
          and get(doc, "@timestamp") and "_id" not in meta and not mapping_problems(doc, mp), str(doc))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpugated", required=True, help="the built gpugated")
    ap.add_argument("--gpugate", help="the built gpugate (default: beside gpugated)")
    ap.add_argument("--source-dir", default=os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("--extra-ledger", action="append", default=[],
                    help="also run the pipeline over this ledger's records (e.g. /var/lib/gpugate/ledger)")
    a = ap.parse_args()
    src = a.source_dir
    gpugate_bin = a.gpugate or os.path.join(os.path.dirname(a.gpugated), "gpugate")
    for b in (a.gpugated, gpugate_bin):
        if not check(f"binary {b}", os.access(b, os.X_OK), "not built (make build)"):
            return 1
    manifest = os.path.join(src, "deploy/kubernetes/gpugate-daemonset.yaml")
    chart = os.path.join(src, "deploy/helm/gpugate")
    logdir = os.path.join(src, "deploy/logging")
    policy_text = open(os.path.join(src, "policy/default.toml")).read()

    yl = need_tool("yamllint", "yamllint")
    if yl:
        files = [manifest, os.path.join(chart, "values.yaml"), os.path.join(chart, "Chart.yaml")]
        r = subprocess.run([yl, "--strict", "-f", "parsable", "-d",
                            "{extends: relaxed, rules: {line-length: {max: 120}}}"] + files,
                           capture_output=True, text=True, check=False)
        check("yamllint (relaxed, lines <= 120, warnings fail): manifest, values.yaml, Chart.yaml",
              r.returncode == 0, r.stdout + r.stderr)

    opts = gpugated_options(a.gpugated)
    check("gpugated --help lists --policy, --metrics-listen, --ledger",
          all(o in opts for o in ("--policy", "--metrics-listen", "--ledger")), str(sorted(opts)))
    default_dir = (opts.get("--ledger") or {}).get("default") or ""
    with tempfile.TemporaryDirectory(prefix="gpugate-fleet-") as tmp:
        ds, port = check_manifest(manifest, policy_text, opts, gpugate_bin, tmp)
        check_chart(chart, ds, port, policy_text)
        ledger = make_ledger(a.gpugated, os.path.join(tmp, "configmap-policy.toml"), tmp)
        ledgers = [ledger] + a.extra_ledger
        longest = max((len(ln) for d in ledgers for ln in read_lines(d)), default=0)
        check_shippers(logdir, ledger, default_dir, longest)
        check_ecs(logdir, ledgers)
    if FAILED:
        print(f"\n{len(FAILED)} check(s) FAILED: " + "; ".join(FAILED))
        return 1
    print("\nall fleet checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Turns the result lines of hack/bench/scale.sh (`scale`, `scale_idle`,
`api`) into the markdown section "8. Control plane at scale", printed, or
written into a benchmarks file in place of the section already there
(between its markers; appended when there is none).

usage: scale_report.py RESULTS [--into docs/benchmarks.md] [--commands FILE]
"""
import sys

BEGIN = "<!-- scale:begin (hack/bench/scale_report.py writes this section) -->"
END = "<!-- scale:end -->"


def parse(path):
    rows = []
    for line in open(path):
        parts = line.split()
        if not parts or parts[0] not in ("scale", "scale_idle", "api"):
            continue
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        kv["kind"] = parts[0]
        rows.append(kv)
    return rows


def cpu(field):
    """'controller:1.2,apiserver:3' -> {'controller': 1.2, ...}"""
    out = {}
    for part in field.split(","):
        if ":" in part:
            k, v = part.split(":", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def mib(kib):
    try:
        return f"{int(kib) / 1024:.1f}"
    except (TypeError, ValueError):
        return "na"


def secs(v):
    return "not reached" if v in (None, "na") else f"{float(v):.1f} s"


def ready(s):
    if s.get("ready_s") not in (None, "na"):
        return secs(s["ready_s"])
    # Not all Ready when the wait ended: how many were, and when it ended.
    return f"{int(s.get('ready', 0)):,} Ready at {float(s.get('all_done_s', 0)):.0f} s"


def render(rows, commands):
    runs = []
    for r in rows:
        key = (r.get("run", "current"), r.get("n"))
        if key not in runs:
            runs.append(key)
    by = {(r["kind"], r.get("run", "current"), r.get("n")): r for r in rows if r["kind"] != "api"}

    def each(kind):
        """(run, n, row) of every run that has a `kind` row, in run order."""
        for run, n in runs:
            if (row := by.get((kind, run, n))):
                yield run, n, row
    out = [BEGIN, "## 8. Control plane at scale", ""]
    out.append(
        "N Functions at zero (a Deployment and a Service each) created at once with "
        "POSTs from 16 threads (`hack/bench/scale_create.py`); the release controller "
        "watches their namespace, the release activator all namespaces; one "
        "kube-apiserver, etcd and kube-controller-manager 1.20.2 on the same 2 shared "
        "cores; the controller manager's client limit per controller is in the table "
        "(20 requests/s by default, raised with `SIESTA_KCM_ARGS`), and the load average "
        "(1 min, at the start and the end of the creation: other work shared the machine). Ready: every Function Ready at generation 1 (at zero: its Deployment "
        "exists and is its own; Ready does not wait for the Deployment controller, "
        "whose part the last two time columns show: N ReplicaSets made, N Deployments "
        "observed). Times from the start "
        "of the creation, from watches (`hack/bench/scale_wait.py`).")
    out.append("")
    out.append("| run | Functions | controller manager QPS | load | created | all Ready | N Deployments | N ReplicaSets | N observed | controller RSS (peak) MiB | activator RSS 0 → N MiB | activator per Function |")
    out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run, n, s in each("scale"):
        per = s.get("act_kib_per_fn", "na")
        out.append(
            f"| {run} | {int(n):,} | {s.get('kcm_qps', '20')} | {s.get('load', 'na').replace(',', ' → ')} | "
            f"{secs(s.get('created_s'))} | {ready(s)} | "
            f"{secs(s.get('deployments_s'))} | {secs(s.get('replicasets_s'))} | "
            f"{secs(s['observed_s']) if 'observed_s' in s else 'not measured'} | "
            f"{mib(s.get('ctl_rss_kib'))} ({mib(s.get('ctl_hwm_kib'))}) | "
            f"{mib(s.get('act_rss0_kib'))} → {mib(s.get('act_rss_kib'))} | {per} KiB |")
    out.append("")
    out.append("CPU seconds from the start of the creation until all were Ready and the ReplicaSets existed:")
    out.append("")
    out.append("| run | Functions | controller | activator | kube-apiserver | etcd | kube-controller-manager |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for run, n, s in each("scale"):
        c = cpu(s.get("cpu_create_s", ""))
        # 0 for a cluster process: its pid file was not readable (not measured).
        out.append(f"| {run} | {int(n):,} | " + " | ".join(
            f"{c[k]:.1f}" if c.get(k) else "na" for k in ("controller", "activator", "apiserver", "etcd", "kcm")) + " |")
    out.append("")
    out.append(
        "Nothing changing, afterwards: API requests from the apiserver's "
        "`apiserver_request_total` over an idle window, watches excepted (they are "
        "counted when they end). The 1.20 apiserver does not label it by client, so "
        "the controller's share is (controller + activator running) − (activator "
        "alone), the activator's is (activator alone) − (nothing of Siesta's), in "
        "windows of the same length. The controller's includes its leader-lease "
        "renewals (one every `--renew-period`, 2 s by default). CPU over the same "
        "window; the autoscaler tick is its decision loop over every Function "
        "(`siesta_controller_autoscaler_decision_duration_seconds`).")
    out.append("")
    out.append("| run | Functions | controller API req/s (by verb:resource) | activator API req/s | autoscaler tick | controller CPU | activator CPU | apiserver CPU |")
    out.append("|---|---:|---|---|---:|---:|---:|---:|")
    for run, n, i in each("scale_idle"):
        ctl = next((r for r in rows if r["kind"] == "api" and r.get("label") == "controller" and r.get("run") == run), {})
        act = next((r for r in rows if r["kind"] == "api" and r.get("label") == "activator" and r.get("run") == run), {})
        w = float(i.get("secs", 60))
        c = cpu(i.get("cpu_idle_s", ""))

        def api(r):
            if not r:
                return "na"
            d = r.get("detail", "none").replace(",", ", ")
            return f"{r.get('per_s')} ({d})"

        def pct(k):
            return f"{100 * c[k] / w:.1f} %" if c.get(k) else "na"

        out.append(
            f"| {run} | {int(n):,} | {api(ctl)} | {api(act)} | {i.get('autoscaler_tick_ms', 'na')} ms | "
            f"{pct('controller')} | {pct('activator')} | {pct('apiserver')} |")
    out.append("")
    if commands:
        out.append("Commands: " + "; ".join(f"`{c}`" for c in commands))
        out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


def main():
    args = sys.argv[1:]
    results = args.pop(0)
    into = None
    commands = []
    while args:
        a = args.pop(0)
        if a == "--into":
            into = args.pop(0)
        elif a == "--commands":
            commands = [l.strip() for l in open(args.pop(0)) if l.strip()]
    section = render(parse(results), commands)
    if not into:
        sys.stdout.write(section)
        return
    text = open(into).read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    elif "\n## Targets" in text:
        head, tail = text.split("\n## Targets", 1)
        text = head.rstrip("\n") + "\n\n" + section + "\n## Targets" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(into, "w").write(text)


main()

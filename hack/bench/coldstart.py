#!/usr/bin/env python3
"""Splits each cold request into phases by lining up wall-clock timestamps:
the client's send/first-byte times (siesta-bench cold), the controller's
"woke up on an activation" line (logged once the scale write returned), the
node agent's "started" (container process running) and "readiness changed
ready=true" lines, and the activator's "pod probed, releasing queue" line.
Prints one `coldsplit` result line per run.

usage: coldstart.py NAMESPACE RESULTS CONTROLLER_LOG DEVNODE_LOG ACTIVATOR_LOG
"""
import re
import sys
from datetime import datetime, timezone

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def lines(path):
    try:
        with open(path, errors="replace") as f:
            for raw in f:
                line = ANSI.sub("", raw)
                m = TS.match(line)
                if m:
                    frac = m.group(1)
                    base, _, us = frac.partition(".")
                    t = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
                    yield t.timestamp() + float("0." + us), line
    except FileNotFoundError:
        return


def first_after(events, t, *needles):
    for ts, line in events:
        if ts >= t and all(n in line for n in needles):
            return ts
    return None


def main():
    ns, results, ctl, devnode, act = sys.argv[1:6]
    ctl_ev = list(lines(ctl))
    act_ev = list(lines(act))
    dev_ev = [e for e in lines(devnode)]
    fn = f"function={ns}/hello"
    for raw in open(results):
        if not raw.startswith("cold run="):
            continue
        kv = dict(p.split("=", 1) for p in raw.split()[1:] if "=" in p)
        send, fb, pod = float(kv["send_unix"]), float(kv["first_byte_unix"]), kv.get("body", "")
        woke = first_after(ctl_ev, send - 0.001, "woke up on an activation", fn)
        pod_ev = [e for e in dev_ev if f"pod={pod} " in e[1] or e[1].rstrip().endswith(f"pod={pod}")]
        running = first_after(pod_ev, send - 0.001, "started", "container=")
        ready = first_after(pod_ev, send - 0.001, "readiness changed", "ready=true")
        released = first_after(act_ev, send - 0.001, "pod probed, releasing queue", fn)
        out = {"run": kv["run"], "status": kv.get("status"), "pod": pod}

        def ms(a, b):
            return "na" if a is None or b is None else f"{(b - a) * 1000:.1f}"

        out["arrival_to_scale_ms"] = ms(send, woke)
        out["scale_to_running_ms"] = ms(woke, running)
        out["running_to_ready_ms"] = ms(running, ready)
        out["ready_to_release_ms"] = ms(ready, released)
        out["release_to_first_byte_ms"] = ms(released, fb)
        out["ready_to_first_byte_ms"] = ms(ready, fb)
        out["total_ms"] = ms(send, fb)
        if woke is not None and ready is not None:
            out["siesta_ms"] = f"{((woke - send) + (fb - ready)) * 1000:.1f}"
        else:
            out["siesta_ms"] = "na"
        if woke is not None and released is not None:
            out["siesta_strict_ms"] = f"{((woke - send) + (fb - released)) * 1000:.1f}"
        else:
            out["siesta_strict_ms"] = "na"
        print("coldsplit " + " ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()

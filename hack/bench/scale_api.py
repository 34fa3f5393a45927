#!/usr/bin/env python3
"""API requests in an idle window, from the apiserver's own counter
`apiserver_request_total` scraped before and after it. The 1.20 apiserver
does not label it by client, so the requests of everything else (the
controller manager, kubectl) are measured in a window of the same length
with Siesta's processes stopped, and subtracted.

usage: scale_api.py BEFORE AFTER [BASE_BEFORE BASE_AFTER] SECONDS RUN LABEL
prints: api run=.. label=.. secs=.. total=.. per_s=.. detail=VERB:resource[/sub]:count,...
WATCH requests are counted by the apiserver when they end, so a window
without reconnects shows none: the watches themselves are not in these
numbers (that is the point: "none beyond watches").
"""
import re
import sys

LINE = re.compile(r'^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$')


def read(path):
    counts = {}
    for line in open(path):
        m = LINE.match(line.strip())
        if not m:
            continue
        labels = dict(kv.split("=", 1) for kv in re.findall(r'\w+="[^"]*"', m.group(1)))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") in ("WATCH", "CONNECT"):
            continue
        res = labels.get("resource", "")
        if labels.get("subresource"):
            res += "/" + labels["subresource"]
        key = f'{labels.get("verb", "?")}:{res or "-"}'
        counts[key] = counts.get(key, 0.0) + float(m.group(2))
    return counts


def delta(before, after):
    a, b = read(after), read(before)
    return {k: a[k] - b.get(k, 0.0) for k in a if a[k] - b.get(k, 0.0) > 0}


args = sys.argv[1:]
label = args.pop()
run = args.pop()
secs = float(args.pop())
ours = delta(args[0], args[1])
if len(args) == 4:
    base = delta(args[2], args[3])
    ours = {k: v - base.get(k, 0.0) for k, v in ours.items()}
    ours = {k: v for k, v in ours.items() if v > 0}
total = sum(ours.values())
detail = ",".join(f"{k}:{v:g}" for k, v in sorted(ours.items(), key=lambda kv: -kv[1])) or "none"
print(f"api run={run} label={label} secs={secs:g} total={total:g} per_s={total / secs:.2f} detail={detail}")

#!/usr/bin/python3
"""How well the predictive split controller predicts another split, phase by phase.

A controlled run's P99 resolves about one latency-histogram bucket (~3% on shifting-mix), and it
mixes the predictor's error with the controller's timing. This check isolates the predictor: it
runs one simulator cell twice with the split held (control.hysteresis 0.99: the predictive
controller predicts every window but never moves), once at --hold and once at --other. Every
window of the --hold run predicts its P99 at --other (the decision audit's predicted curve, both
nodes, the grid split nearest --other); the --other run is what happened there. Per phase it
prints the geometric means over the phase's windows of

  predicted  the predicted P99 at --other over the prediction at the held split, and
  realised   the --other run's window P99 over the --hold run's (cluster P99s, same windows).

Both runs take the same workload and seed, so their windows see the same arrivals. A predictor
that sees what a split is worth has predicted ~= realised in every phase.

Usage (both runs in parallel, ~3 minutes on 2 cores for the shifting-mix cell):
  /usr/bin/python3 scripts/predictor_check.py --config configs/sim/shifting-mix.yaml \\
      --cell kuairand/steady/2 --hold 0.8 --other 0.45 --phases 20-40,43-51,49-57 \\
      [--set key=value ...] [--bin build/bin/helm-sim] [--out /tmp/predictor-check]
Ends with one HELM_RESULT predictor_<phase> <predicted / realised> line per phase.
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys


def run_sim(args, split, out):
    cmd = [args.bin, "--config", args.config, "--out", out, "--cell", args.cell,
           "--row", "predictive", "--set", "control.hysteresis=0.99",
           "--set", f"pool.initial_split={split}",
           "--set", f"control.audit_log={out}.audit.jsonl"]
    for s in args.set:
        cmd += ["--set", s]
    log = open(out + ".log", "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def window_p99(out):
    with open(os.path.join(out, "windows.csv")) as f:
        return {round(float(r["end_s"])): float(r["p99_ms"]) for r in csv.DictReader(f)}


def predictions(audit, other):
    """{window end s: [predicted P99 at `other` / predicted P99 now, one per node]}"""
    out = {}
    with open(audit) as f:
        for line in f:
            d = json.loads(line)["decision"]
            if "predicted" not in d or d.get("p99_now_us", 0) <= 0:
                continue
            split, p99 = min(d["predicted"], key=lambda c: abs(c[0] - other))
            t = round(json.loads(line)["time_ms"] / 1000)
            out.setdefault(t, []).append(p99 / d["p99_now_us"])
    return out


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--cell", required=True)
    p.add_argument("--hold", type=float, required=True)
    p.add_argument("--other", type=float, required=True)
    p.add_argument("--phases", default="20-40,43-51,49-57",
                   help="comma-separated FROM-TO ranges of window end seconds")
    p.add_argument("--set", action="append", default=[], help="passed to helm-sim")
    p.add_argument("--bin", default="build/bin/helm-sim")
    p.add_argument("--out", default="/tmp/predictor-check")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    held, other = os.path.join(args.out, "hold"), os.path.join(args.out, "other")
    procs = [run_sim(args, args.hold, held), run_sim(args, args.other, other)]
    print(f"running {args.cell} held at {args.hold} and at {args.other} ...", flush=True)
    for proc, out in zip(procs, (held, other)):
        if proc.wait() != 0:
            sys.exit(f"helm-sim failed ({out}.log)")
    predicted = predictions(held + ".audit.jsonl", args.other)
    p99_hold, p99_other = window_p99(held), window_p99(other)
    print(f"{'phase':>8} {'windows':>8} {'predicted':>10} {'realised':>10}")
    results = []
    for phase in args.phases.split(","):
        lo, hi = (int(x) for x in phase.split("-"))
        ts = [t for t in range(lo, hi + 1) if t in predicted and t in p99_hold and t in p99_other]
        pred = geomean([x for t in ts for x in predicted[t]])
        real = geomean([p99_other[t] / p99_hold[t] for t in ts])
        print(f"{phase:>8} {len(ts):>8} {pred:>10.3f} {real:>10.3f}")
        results.append((phase.replace("-", "_"), pred / real))
    for name, ratio in results:
        print(f"HELM_RESULT predictor_{name}s {ratio:.3f}")


if __name__ == "__main__":
    main()

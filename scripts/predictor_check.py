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
  realised   the --other run's window P99 over the --hold run's (cluster P99s, same windows),

and beside them what the miniature caches read at either split against what each run had: the
KV copies' share of the sampled answers' history tokens reused against the run's K/V token hit,
and the EMB copies' miss ratio against the run's EMB miss ratio (per second, cluster-wide).

Both runs take the same workload and seed, so their windows see the same arrivals. A predictor
that sees what a split is worth has predicted ~= realised in every phase.

Usage (both runs in parallel, ~3 minutes on 2 cores for the shifting-mix cell):
  /usr/bin/python3 scripts/predictor_check.py --config configs/sim/shifting-mix.yaml \\
      --cell kuairand/steady/2 --hold 0.8 --other 0.45 --phases 20-40,43-51,49-57 \\
      [--set key=value ...] [--bin build/bin/helm-sim] [--out /tmp/predictor-check] [--no-run]
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


def interpolate(pairs, x):
    """The [x, y] pairs' y at x, linear between neighbours, clamped at the ends."""
    pairs = sorted(pairs)
    if x <= pairs[0][0]:
        return pairs[0][1]
    for (x0, y0), (x1, y1) in zip(pairs, pairs[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pairs[-1][1]


def predictions(audit, split, other):
    """{window end s: [(predicted P99 at `other` / at `split`, the KV copies' hit at `split` and at
    `other`, the EMB copies' miss ratio at `split` and at `other`), one per node]}"""
    out = {}
    with open(audit) as f:
        for line in f:
            record = json.loads(line)
            d = record["decision"]
            if "predicted" not in d or d.get("p99_now_us", 0) <= 0:
                continue
            _, p99 = min(d["predicted"], key=lambda c: abs(c[0] - other))
            kv, emb = d.get("kv_copies_hit") or [], d.get("emb_copies_miss") or []
            nan = float("nan")
            out.setdefault(round(record["time_ms"] / 1000), []).append((
                p99 / d["p99_now_us"],
                interpolate(kv, split) if kv else nan, interpolate(kv, other) if kv else nan,
                interpolate(emb, split) if emb else nan, interpolate(emb, other) if emb else nan))
    return out


def per_second(out):
    """{window end s: (K/V token hit, EMB miss ratio)} from the run's timeseries (second t - 1)."""
    with open(os.path.join(out, "timeseries.csv")) as f:
        return {int(r["t_s"]) + 1: (float(r["kv_token_hit"]), 1 - float(r["emb_hit"]))
                for r in csv.DictReader(f)}


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
    p.add_argument("--no-run", action="store_true",
                   help="compare the runs already in --out instead of running them")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    held, other = os.path.join(args.out, "hold"), os.path.join(args.out, "other")
    if not args.no_run:
        procs = [run_sim(args, args.hold, held), run_sim(args, args.other, other)]
        print(f"running {args.cell} held at {args.hold} and at {args.other} ...", flush=True)
        for proc, out in zip(procs, (held, other)):
            if proc.wait() != 0:
                sys.exit(f"helm-sim failed ({out}.log)")
    predicted = predictions(held + ".audit.jsonl", args.hold, args.other)
    p99_hold, p99_other = window_p99(held), window_p99(other)
    caches_hold, caches_other = per_second(held), per_second(other)
    print("P99 at --other over P99 at --hold (geometric means), and what the miniature caches read\n"
          "(means over nodes and windows; 'copies' from the held run's audit, 'run' the run's own)")
    print(f"{'phase':>8} {'windows':>7} {'predicted':>9} {'realised':>9} | "
          f"{'K/V hit: copies at hold, run':>28} {'copies at other, run':>21} | "
          f"{'EMB miss: copies at hold, run':>29} {'copies at other, run':>21}")
    results = []
    for phase in args.phases.split(","):
        lo, hi = (int(x) for x in phase.split("-"))
        ts = [t for t in range(lo, hi + 1) if t in predicted and t in p99_hold and t in p99_other
              and t in caches_hold and t in caches_other]
        rows = [x for t in ts for x in predicted[t]]
        pred = geomean([x[0] for x in rows])
        real = geomean([p99_other[t] / p99_hold[t] for t in ts])
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
        kv = [mean([x[i] for x in rows]) for i in (1, 2)]
        emb = [mean([x[i] for x in rows]) for i in (3, 4)]
        kv_run = [mean([c[t][0] for t in ts]) for c in (caches_hold, caches_other)]
        emb_run = [mean([c[t][1] for t in ts]) for c in (caches_hold, caches_other)]
        print(f"{phase:>8} {len(ts):>7} {pred:>9.3f} {real:>9.3f} | "
              f"{kv[0]:>20.3f} {kv_run[0]:>7.3f} {kv[1]:>13.3f} {kv_run[1]:>7.3f} | "
              f"{emb[0]:>21.3f} {emb_run[0]:>7.3f} {emb[1]:>13.3f} {emb_run[1]:>7.3f}")
        results.append((phase.replace("-", "_"), pred / real))
    for name, ratio in results:
        print(f"HELM_RESULT predictor_{name}s {ratio:.3f}")


if __name__ == "__main__":
    main()

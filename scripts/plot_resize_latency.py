#!/usr/bin/python3
"""Plots helm_bench_memory's resize figure: EMB lookup latency over time, idle and resizing.

Reads the CSV that `helm_bench_memory --csv PATH` writes (t_ms, latency_us, phase) and draws
every lookup as a point (log latency axis) with the resize windows shaded, plus the P99 of each
phase as a horizontal line: lookup_p99_resize_vs_idle is the ratio of those two lines.

Needs matplotlib (Debian: python3-matplotlib, for /usr/bin/python3). Usage:
  /usr/bin/python3 scripts/plot_resize_latency.py --csv out/bench/resize_latency.csv \\
      --out out/bench/resize_latency.png
"""

import argparse
import csv


def read_samples(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"plot_resize_latency: {path} has no rows")
    return [(float(r["t_ms"]), float(r["latency_us"]), r["phase"]) for r in rows]


def p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def resize_windows(samples):
    """[start, end] of each run of consecutive resize samples."""
    windows, start, last = [], None, None
    for t, _, phase in samples:
        if phase == "resize" and start is None:
            start = t
        elif phase != "resize" and start is not None:
            windows.append((start, last))
            start = None
        last = t
    if start is not None:
        windows.append((start, last))
    return windows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = read_samples(args.csv)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for start, end in resize_windows(samples):
        ax.axvspan(start, end, color="tab:orange", alpha=0.12, lw=0)
    for phase, color in (("idle", "tab:blue"), ("resize", "tab:orange")):
        points = [(t, us) for t, us, p in samples if p == phase]
        if not points:
            continue
        ax.scatter([t for t, _ in points], [us for _, us in points], s=3, color=color,
                   label=f"{phase} ({len(points)} lookups)")
        line = p99([us for _, us in points])
        ax.axhline(line, color=color, ls="--", lw=1, label=f"{phase} P99 {line:.0f} us")
    ax.set_yscale("log")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("EMB batch lookup latency (us)")
    ax.set_title("EMB lookups while a resize moves 20% of the pool (shaded) and idle")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()

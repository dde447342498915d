#!/usr/bin/python3
"""Plots helm-sim output as a PNG.

A run (timeseries.csv; windows.csv beside it is read too): three panels sharing the time axis:
P50/P99 latency per simulated second with the offered rate; the committed EMB share of every
node's pool per second (and each window's target, dashed, when windows.csv is there); the KV token
hit ratio and the EMB hit rate per second.

A split sweep (sweep.csv): one panel per profile x scale, P99 against the static split, one line
per regime, with each regime's heuristic and oracle P99 as dashed and dotted lines.

The paper's table (--paper-dir DIR: the cells/<cell>__<row>-windows.csv that helm-sim writes with
simulator.paper_table): one panel per cell, the split over time (mean target over nodes per window)
of every adaptive row against the oracle's, and the global static split as a flat line.

Needs matplotlib (Debian: python3-matplotlib, for /usr/bin/python3). Usage:
  /usr/bin/python3 scripts/plot_sim.py --csv out/sim/timeseries.csv --out out/sim/plot.png
  /usr/bin/python3 scripts/plot_sim.py --csv out/sim/sweep.csv --out out/sim/sweep.png
  /usr/bin/python3 scripts/plot_sim.py --paper-dir out/sim/paper-table --global-split 0.5 \
      --out out/sim/paper-table/paper-splits.png
"""

import argparse
import csv
import glob
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"plot_sim: {path} has no rows")
    return rows


def plot_run(rows, windows, out):
    t = [float(r["t_s"]) for r in rows]
    fig, ax = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    ax[0].plot(t, [float(r["p50_ms"]) for r in rows], label="P50")
    ax[0].plot(t, [float(r["p99_ms"]) for r in rows], label="P99")
    ax[0].set_ylabel("latency (ms)")
    rate = ax[0].twinx()
    rate.plot(t, [float(r["arrivals"]) for r in rows], color="grey", alpha=0.4, label="offered")
    rate.set_ylabel("requests / s")
    ax[0].legend(loc="upper left")
    splits = sorted((k for k in rows[0] if k.startswith("split_")), key=lambda k: int(k[6:]))
    for k in splits:
        ax[1].plot(t, [float(r[k]) for r in rows], label=f"node {k[6:]}")
    if windows:
        wt = [float(w["end_s"]) for w in windows]
        for k in sorted((k for k in windows[0] if k.startswith("target_")), key=lambda k: int(k[7:])):
            ax[1].step(wt, [float(w[k]) for w in windows], where="pre", linestyle="--", alpha=0.5)
    ax[1].set_ylabel("EMB share of the pool")
    ax[1].set_ylim(0, 1)
    if len(splits) <= 8:
        ax[1].legend(loc="upper left", ncol=4, fontsize="small")
    ax[2].plot(t, [float(r["kv_token_hit"]) for r in rows], label="KV token hit")
    ax[2].plot(t, [float(r["emb_hit"]) for r in rows], label="EMB hit")
    ax[2].set_ylim(0, 1)
    ax[2].set_ylabel("hit ratio")
    ax[2].set_xlabel("simulated time (s)")
    ax[2].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def plot_sweep(rows, out):
    panels = sorted({(r["profile"], float(r["scale"])) for r in rows})
    cols = min(3, len(panels))
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    for i, (profile, scale) in enumerate(panels):
        ax = axes[i // cols][i % cols]
        cell = [r for r in rows if r["profile"] == profile and float(r["scale"]) == scale]
        for j, regime in enumerate(sorted({r["regime"] for r in cell})):
            color = f"C{j}"
            static = [r for r in cell if r["regime"] == regime and r["controller"] == "static"]
            ax.plot([float(r["split"]) for r in static], [float(r["p99_ms"]) for r in static],
                    marker="o", markersize=3, color=color, label=regime)
            for r in cell:
                if r["regime"] != regime or r["controller"] == "static":
                    continue
                style = "--" if r["controller"] == "heuristic" else ":"
                ax.axhline(float(r["p99_ms"]), color=color, linestyle=style, linewidth=1)
        ax.set_title(f"{profile}, EMB footprint / pool = {scale:g}", fontsize="medium")
        ax.set_xlabel("static split (EMB share)")
        ax.set_ylabel("P99 (ms)")
        ax.legend(fontsize="small", title="-- heuristic, : oracle", title_fontsize="x-small")
    for k in range(len(panels), nrows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def plot_paper(directory, global_split, out):
    cells = {}
    for path in sorted(glob.glob(os.path.join(directory, "cells", "*-windows.csv"))):
        cell, row = os.path.basename(path)[: -len("-windows.csv")].split("__")
        cells.setdefault(cell, {})[row] = read(path)
    if not cells:
        raise SystemExit("no cells/*-windows.csv under " + directory)
    n = len(cells)
    cols = min(3, n)
    rows_n = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.2 * rows_n), squeeze=False)
    for ax, (cell, runs) in zip(axes.flat, sorted(cells.items())):
        for row, windows in sorted(runs.items()):
            targets = [k for k in windows[0] if k.startswith("target_")]
            t = [float(w["end_s"]) for w in windows]
            mean = [sum(float(w[k]) for k in targets) / len(targets) for w in windows]
            style = {"color": "black", "linewidth": 2.0} if row == "oracle" else {"linewidth": 1.2}
            ax.plot(t, mean, label=row, **style)
        ax.axhline(global_split, color="gray", linestyle=":", label="static-global")
        ax.set_title(cell, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("simulated s")
        ax.set_ylabel("EMB share (mean over nodes)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv")
    parser.add_argument("--paper-dir")
    parser.add_argument("--global-split", type=float, default=0.5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.paper_dir:
        plot_paper(args.paper_dir, args.global_split, args.out)
        return
    if not args.csv:
        parser.error("--csv or --paper-dir is required")
    rows = read(args.csv)
    if "profile" in rows[0]:
        plot_sweep(rows, args.out)
        return
    windows_path = os.path.join(os.path.dirname(args.csv), "windows.csv")
    windows = read(windows_path) if os.path.exists(windows_path) else []
    plot_run(rows, windows, args.out)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Plots a helm-bench time series (timeseries.csv) as a PNG.

Three panels sharing the time axis: latency P50/P99 per second (from each request's scheduled
time) with the offered and OK rates on a second axis; the EMB share (split) of each node's pool as
polled with GetStats; and each node's KV token hit ratio and EMB hit rate from the replies. With
--requests (helm-bench's requests.csv) a fourth: where each second's OK requests spent their time
on average, stacked: the node's queue (with its EMB lookups), its compute, and the rest (gRPC hops,
router, client). Phase boundaries are drawn as vertical lines.

Needs matplotlib (Debian: python3-matplotlib, for /usr/bin/python3). Usage:
  /usr/bin/python3 scripts/plot_bench.py --csv out/bench/timeseries.csv --out out/bench/plot.png
"""

import argparse
import csv
import sys


def read_series(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"plot_bench: {path} has no rows")
    return rows


def column(rows, name, scale=1.0):
    """Values of a column; None where the cell is empty."""
    out = []
    for row in rows:
        cell = row.get(name, "")
        out.append(float(cell) * scale if cell not in ("", None) else None)
    return out


def has_data(rows, prefix):
    """Whether any cell of the columns starting with `prefix` holds a value."""
    return any(v not in ("", None) for row in rows for k, v in row.items() if k.startswith(prefix))


def read_breakdown(path, seconds):
    """Per second of schedule: the mean queue, compute and outside-the-node time (us) of its OK
    requests; 0 for a second without one."""
    sums = [[0.0, 0.0, 0.0, 0] for _ in range(seconds)]
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            second = int(float(r["scheduled_ms"]) // 1000)
            if r["code"] != "0" or not 0 <= second < seconds:
                continue
            queue, compute = float(r["queue_us"]), float(r["compute_us"])
            s = sums[second]
            s[0] += queue
            s[1] += compute
            s[2] += max(0.0, float(r["latency_us"]) - queue - compute)
            s[3] += 1
    return [[s[k] / s[3] if s[3] else 0.0 for s in sums] for k in range(3)]


def node_ids(header, prefix):
    return [h[len(prefix):] for h in header if h.startswith(prefix)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True, help="helm-bench timeseries.csv")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="helm-bench", help="figure title")
    parser.add_argument("--requests", help="helm-bench requests.csv: adds the latency breakdown")
    args = parser.parse_args()

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_bench: matplotlib is not importable (apt-get install python3-matplotlib)",
              file=sys.stderr)
        return 3

    rows = read_series(args.csv)
    header = list(rows[0].keys())
    t = [float(r["t_s"]) + 0.5 for r in rows]
    breakdown = read_breakdown(args.requests, len(rows)) if args.requests else None
    panels = 4 if breakdown else 3
    fig, axes = plt.subplots(panels, 1, figsize=(11, 3 * panels), sharex=True)
    ax_lat, ax_split, ax_hit = axes[:3]

    ax_lat.plot(t, column(rows, "p50_us", 1e-3), label="P50", color="tab:blue")
    ax_lat.plot(t, column(rows, "p99_us", 1e-3), label="P99", color="tab:red")
    ax_lat.set_ylabel("latency (ms, from schedule)")
    if any(v is not None for v in column(rows, "p99_us")):
        ax_lat.set_yscale("log")
    else:
        ax_lat.text(0.5, 0.5, "no OK replies", ha="center", transform=ax_lat.transAxes)
    ax_rate = ax_lat.twinx()
    ax_rate.plot(t, column(rows, "scheduled"), label="offered/s", color="tab:gray", alpha=0.5)
    ax_rate.plot(t, column(rows, "ok"), label="OK/s", color="tab:green", alpha=0.5)
    ax_rate.set_ylabel("requests / s")
    lines = ax_lat.get_legend_handles_labels()
    rate_lines = ax_rate.get_legend_handles_labels()
    ax_lat.legend(lines[0] + rate_lines[0], lines[1] + rate_lines[1], loc="upper left",
                  fontsize="small")

    for node in node_ids(header, "split:"):
        ax_split.plot(t, column(rows, "split:" + node), label=node, marker=".", markersize=3)
    ax_split.set_ylabel("EMB share of pool")
    ax_split.set_ylim(0, 1)
    if has_data(rows, "split:"):
        ax_split.legend(loc="upper left", fontsize="small")
    else:
        ax_split.text(0.5, 0.5, "no node stats (GetStats unavailable)", ha="center",
                      transform=ax_split.transAxes)

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, node in enumerate(node_ids(header, "kv_hit:")):
        color = colors[i % len(colors)]
        ax_hit.plot(t, column(rows, "kv_hit:" + node), label=f"KV token hit {node}", color=color)
        ax_hit.plot(t, column(rows, "emb_hit:" + node), label=f"EMB hit {node}", color=color,
                    linestyle="--")
    ax_hit.set_ylabel("hit ratio (replies)")
    ax_hit.set_ylim(0, 1)
    if breakdown:
        ax_parts = axes[3]
        ax_parts.stackplot(t, [[v * 1e-3 for v in part] for part in breakdown],
                           labels=["node queue (+ EMB lookups)", "node compute",
                                   "outside the node (gRPC, router, client)"],
                           colors=["tab:orange", "tab:blue", "tab:gray"], alpha=0.7)
        ax_parts.set_ylabel("mean latency (ms)")
        ax_parts.legend(loc="upper left", fontsize="small")
    axes[-1].set_xlabel("time (s)")
    if has_data(rows, "kv_hit:") or has_data(rows, "emb_hit:"):
        ax_hit.legend(loc="upper left", fontsize="small", ncol=2)
    else:
        ax_hit.text(0.5, 0.5, "no serving info in replies", ha="center",
                    transform=ax_hit.transAxes)

    # Phase boundaries and names.
    previous = None
    for x, row in zip(t, rows):
        if row["phase"] != previous:
            for ax in axes:
                ax.axvline(x - 0.5, color="black", alpha=0.2)
            ax_lat.text(x - 0.5, 1.02, row["phase"], transform=ax_lat.get_xaxis_transform(),
                        fontsize="small")
            previous = row["phase"]

    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Plots helm-train's curve.csv (one row per PPO iteration) as a small PNG.

Three panels sharing the iteration axis: the mean reward per statistics window (each iteration,
and its running mean over 5), the episodes' mean P99 over the SLO, and the entropy of the policy
with the value loss (right axis), and, where curve.csv has it, the cross-entropy of the decided
actions under the acting actor (during a kickstart: against the imitated rule's choices).

Needs matplotlib (Debian: python3-matplotlib, for /usr/bin/python3). Usage:
  /usr/bin/python3 scripts/plot_train.py --csv out/train/curve.csv --out out/train/curve.png
"""

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def running_mean(values, span):
    out = []
    for i in range(len(values)):
        window = values[max(0, i - span + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"plot_train: {args.csv} has no rows")
    it = [int(r["iteration"]) for r in rows]
    reward = [float(r["mean_reward"]) for r in rows]
    p99 = [float(r["mean_p99_over_slo"]) for r in rows]
    entropy = [float(r["entropy"]) for r in rows]
    vloss = [float(r["value_loss"]) for r in rows]
    wall_min = float(rows[-1]["wall_s"]) / 60
    steps = int(rows[-1]["total_steps"])

    fig, ax = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True, dpi=80)
    ax[0].plot(it, reward, ".", alpha=0.5, label="per iteration")
    ax[0].plot(it, running_mean(reward, 5), "-", label="running mean (5)")
    ax[0].set_ylabel("mean reward / window")
    ax[0].legend(loc="lower right", fontsize=8)
    ax[0].set_title(f"helm-train: {len(rows)} iterations, {steps} steps, {wall_min:.0f} min", fontsize=10)
    ax[1].plot(it, p99, ".", alpha=0.5)
    ax[1].plot(it, running_mean(p99, 5), "-")
    ax[1].set_ylabel("P99 / SLO")
    ax[2].plot(it, entropy, "-", color="tab:green", label="entropy")
    if "rollout_cross_entropy" in rows[0]:
        ce = [float(r["rollout_cross_entropy"]) for r in rows]
        ax[2].plot(it, ce, "--", color="tab:blue", label="cross-entropy of the decided actions")
        ax[2].legend(loc="upper right", fontsize=8)
    ax[2].set_ylabel("entropy (nats)")
    twin = ax[2].twinx()
    twin.plot(it, vloss, "-", color="tab:red", alpha=0.6, label="value loss")
    twin.set_ylabel("value loss")
    twin.set_yscale("log")
    ax[2].set_xlabel("PPO iteration")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out)


if __name__ == "__main__":
    main()

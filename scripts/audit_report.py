#!/usr/bin/env python3
"""Why a node's split moved: a control audit log (control.audit_log, JSONL) read back per node.

    scripts/audit_report.py AUDIT.jsonl [--node NODE] [--all]

For each node: every decision that moved the target split (--all: every decision), with the
layer in charge (the decision's mode: base, adapter, burst, rollback for the helm controller; the
policy's name otherwise), and for the helm controller what each layer said (the base policy's
change, the adapter's correction, recovery's mode and its flags). Then a summary: decisions,
moves and reversals (a move the other way from the one before it, as the node's safety gate
counts them), each by the layer in charge, and the split at the end.

Reads the lines helm-node and helm-sim write (serve/audit_log.cc); the standard library only.
"""
import argparse
import collections
import json
import sys


def sign(x, eps=1e-9):
    return 1 if x > eps else (-1 if x < -eps else 0)


def describe(line):
    """What each layer said, for the helm controller's decision record; '' otherwise."""
    d = line.get("decision")
    if not isinstance(d, dict) or "base" not in d:
        return ""
    parts = [f"base {d['base'].get('delta', 0):+.3f}"]
    adapter = d.get("adapter")
    if adapter is not None:  # null with the adapter off
        parts.append(f"adapter u {adapter.get('u', 0):+.3f} (c {adapter.get('c', 0):+.3f})")
    recovery = d.get("recovery")
    if recovery is not None:
        flags = [name for name in ("rollback_vetoed", "shape_shift") if recovery.get(name)]
        parts.append(f"recovery {recovery.get('mode', '?')}" + (f" [{', '.join(flags)}]" if flags else ""))
    if d.get("in_flight"):
        parts.append("move in flight")
    return "; ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audit", help="control audit log (JSONL)")
    parser.add_argument("--node", help="only this node id")
    parser.add_argument("--all", action="store_true", help="every decision, not only the moves")
    args = parser.parse_args()

    by_node = collections.OrderedDict()
    with open(args.audit) as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                node, old, new = line["node"], float(line["old_target"]), float(line["new_target"])
            except KeyError as e:
                sys.exit(f"{args.audit}:{number}: not an audit line (no {e})")
            except (ValueError, TypeError) as e:
                sys.exit(f"{args.audit}:{number}: not an audit line ({e})")
            if args.node is None or node == args.node:
                by_node.setdefault(node, []).append((line, old, new))
    if not by_node:
        sys.exit(f"{args.audit}: no decisions" + (f" of node {args.node}" if args.node else ""))
    start_ms = min(line["time_ms"] for lines in by_node.values() for line, _, _ in lines)

    for node, lines in sorted(by_node.items()):
        print(f"== {node} ({lines[0][0].get('policy', '?')})")
        moves, reversals = collections.Counter(), collections.Counter()
        decisions = collections.Counter()
        last_sign = 0
        for line, old, new in lines:
            mode = line.get("mode", "?")
            decisions[mode] += 1
            s = sign(new - old)
            reversal = s != 0 and s == -last_sign
            if s != 0:
                moves[mode] += 1
                reversals[mode] += reversal
                last_sign = s
            if s != 0 or args.all:
                t = (line["time_ms"] - start_ms) / 1000
                print(f"  {t:7.1f} s  {mode:9s} {old:.3f} -> {new:.3f}"
                      f"{'  reversal' if reversal else '          '}  {describe(line)}")

        def by_mode(counter):
            return ", ".join(f"{k} {v}" for k, v in counter.most_common() if v) or "none"

        print(f"  decisions {sum(decisions.values())} ({by_mode(decisions)})")
        print(f"  moves {sum(moves.values())} ({by_mode(moves)})")
        print(f"  reversals {sum(reversals.values())} ({by_mode(reversals)})")
        print(f"  split {lines[0][1]:.3f} -> {lines[-1][2]:.3f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A real Prometheus scrapes a local HELM cluster; its HTTP API must report the traffic sent.

Steps (about 40 s on 2 cores; bounded by --budget-s, 90 s by default):
  1. promtool checks docker/prometheus/alerts.yml; the Grafana dashboard JSON parses.
  2. helm-cluster starts 2 nodes and a router from configs/local.yaml with /metrics on free ports
     (gRPC ports ephemeral).
  3. Debian's prometheus, as a plain process (no systemd), scrapes them every 1 s: 127.0.0.1 only,
     temporary storage, the alert rules loaded.
  4. helm-bench sends a known load (steady, 20 requests/s for 6 s) through the router.
  5. Prometheus's /api/v1/query must give:
       - the router's helm_requests_total{status="OK"} equal to the OK replies helm-bench counted
         (exactly: the counters are cumulative and every reply is in by the last scrape);
       - the nodes' OK replies, summed, equal to it too (no retries in a healthy cluster);
       - increase() and rate() over a window covering the run, evaluated at the last scrape, within
         2 % of the OK count and of OK count / window (exact but for rounding: no extrapolation
         happens at either edge, see below).
  6. Every helm_* metric the dashboard and the alert rules use exists in a scrape of the node or
     the router (histogram _bucket/_sum/_count taken back to their family).
Every process started is stopped at the end (SIGTERM, then SIGKILL), the temp dir removed.
Exit status 0 on success; 1 with a message on failure, including a missing prometheus binary.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# increase()/rate() evaluated at the last scrape over a window that starts at 0 are exact; the
# tolerance covers float rounding and a reply that lands between two scrapes of different targets.
TOLERANCE = 0.02


def fail(message):
    print(f"prometheus_test: FAIL: {message}", flush=True)
    sys.exit(1)


def free_ports(count, consecutive=False):
    """`count` free TCP ports on 127.0.0.1 (consecutive ones when asked)."""
    for _ in range(200):
        socks = []
        try:
            first = socket.socket()
            first.bind(("127.0.0.1", 0))
            socks.append(first)
            base = first.getsockname()[1]
            ports = [base]
            for i in range(1, count):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i if consecutive else 0))
                socks.append(s)
                ports.append(s.getsockname()[1])
            return ports
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    fail("no free ports")


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def query(prom, expr, at=None):
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    body = json.loads(http_get(f"{prom}/api/v1/query?{urllib.parse.urlencode(params)}"))
    if body.get("status") != "success":
        fail(f"query {expr!r}: {body}")
    return body["data"]["result"]


def scalar(prom, expr, at=None):
    result = query(prom, expr, at)
    return float(result[0]["value"][1]) if result else None


def wait_for(what, predicate, deadline):
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    fail(f"timed out waiting for {what}")


def stop(process, name):
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        print(f"prometheus_test: {name} ignored SIGTERM; killing it", flush=True)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def metric_names_used(text):
    names = set(re.findall(r"\bhelm_[a-zA-Z0-9_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count"))
            else n for n in names}


def scraped_names(text):
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) ", line)
        if m:
            names.add(m.group(1))
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default=os.path.join(REPO, "build", "bin"))
    parser.add_argument("--budget-s", type=float, default=90)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    start = time.monotonic()
    deadline = start + args.budget_s

    prometheus = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    if prometheus is None or promtool is None:
        fail("the 'prometheus' and 'promtool' binaries are not installed (Debian package "
             "'prometheus'; scripts/deps.sh installs it)")
    for exe in ("helm-cluster", "helm-node", "helm-router", "helm-bench"):
        if not os.access(os.path.join(args.bin_dir, exe), os.X_OK):
            fail(f"{exe} not found in {args.bin_dir} (build it first)")

    alerts = os.path.join(REPO, "docker", "prometheus", "alerts.yml")
    dashboard_path = os.path.join(REPO, "docker", "grafana", "helm-dashboard.json")
    check = subprocess.run([promtool, "check", "rules", alerts], capture_output=True, text=True)
    if check.returncode != 0:
        fail(f"promtool check rules {alerts}:\n{check.stdout}{check.stderr}")
    with open(dashboard_path) as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    if not exprs:
        fail("the dashboard has no queries")
    with open(alerts) as f:
        alerts_text = f.read()
    used = metric_names_used("\n".join(exprs)) | metric_names_used(alerts_text)

    tmp = tempfile.mkdtemp(prefix="helm-prometheus-test-")
    cluster = prom_process = None
    try:
        node_port, _ = free_ports(2, consecutive=True)
        router_port, prom_port = free_ports(2)
        with open(os.path.join(REPO, "configs", "local.yaml")) as f:
            config = yaml.safe_load(f)
        config["metrics"] = {"address": "127.0.0.1", "node_port": node_port,
                             "router_port": router_port}
        config_path = os.path.join(tmp, "helm.yaml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)

        logs = os.path.join(tmp, "logs")
        os.makedirs(logs)
        cluster_out = open(os.path.join(tmp, "cluster.out"), "w+")
        cluster = subprocess.Popen(
            [os.path.join(args.bin_dir, "helm-cluster"), "--config", config_path,
             "--ephemeral-ports", "--log-dir", logs],
            stdout=cluster_out, stderr=subprocess.STDOUT, start_new_session=True)

        node_targets = [f"127.0.0.1:{node_port}", f"127.0.0.1:{node_port + 1}"]
        router_target = f"127.0.0.1:{router_port}"
        prom_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [alerts],
            "scrape_configs": [
                {"job_name": "helm-router", "static_configs": [{"targets": [router_target]}]},
                {"job_name": "helm-node", "static_configs": [{"targets": node_targets}]},
            ],
        }
        prom_config_path = os.path.join(tmp, "prometheus.yml")
        with open(prom_config_path, "w") as f:
            yaml.safe_dump(prom_config, f)
        prom = f"http://127.0.0.1:{prom_port}"
        prom_process = subprocess.Popen(
            [prometheus, f"--config.file={prom_config_path}",
             f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=open(os.path.join(tmp, "prometheus.log"), "w"), stderr=subprocess.STDOUT,
            start_new_session=True)

        def cluster_router():
            cluster_out.seek(0)
            m = re.search(r"^ROUTER (\S+)$", cluster_out.read(), re.M)
            if m is None and cluster.poll() is not None:
                cluster_out.seek(0)
                fail(f"helm-cluster exited with {cluster.returncode}:\n{cluster_out.read()}")
            return m.group(1) if m else None

        router = wait_for("the cluster", cluster_router, deadline)
        print(f"prometheus_test: cluster up, router {router}", flush=True)

        def ready():
            if prom_process.poll() is not None:
                fail(f"prometheus exited with {prom_process.returncode}; see its log")
            try:
                return http_get(f"{prom}/-/ready").strip() != ""
            except OSError:
                return False

        wait_for("prometheus to be ready", ready, deadline)
        wait_for("all three targets up",
                 lambda: scalar(prom, "sum(up)") == 3 and
                 scalar(prom, 'count(helm_requests_total{method="Rank",status="OK"})') == 3,
                 deadline)
        before = time.time()
        print(f"prometheus_test: prometheus up on {prom}, scraping 3 targets", flush=True)

        bench_out = os.path.join(tmp, "bench")
        bench = subprocess.run(
            [os.path.join(args.bin_dir, "helm-bench"), "--config", config_path, "--target", router,
             "--regime", "steady", "--rate", "20", "--duration", "6", "--out", bench_out,
             "--no-plot", "--no-progress"],
            capture_output=True, text=True, timeout=max(5, deadline - time.monotonic()))
        if bench.returncode != 0:
            fail(f"helm-bench exited with {bench.returncode}:\n{bench.stdout}{bench.stderr}")
        with open(os.path.join(bench_out, "summary.json")) as f:
            overall = json.load(f)["overall"]
        sent, ok = overall["sent"], overall["ok"]
        run_s = time.time() - before
        print(f"prometheus_test: helm-bench sent {sent}, {ok} OK in {run_s:.1f} s", flush=True)
        if ok < 50:
            fail(f"too little traffic answered OK ({ok} of {sent})")

        router_ok = 'sum(helm_requests_total{job="helm-router",method="Rank",status="OK"})'
        node_ok = 'sum(helm_requests_total{job="helm-node",method="Rank",status="OK"})'
        # Scrapes come every second: wait until one after the last reply is in.
        wait_for("a scrape with every reply",
                 lambda: scalar(prom, router_ok) == ok and scalar(prom, node_ok) == ok, deadline)
        # Evaluated at the last scrape's time, over a window that starts before the traffic (the
        # counter reads 0 there): Prometheus then extrapolates neither edge (none past the last
        # sample; none before a first sample of 0), so increase() is the exact count.
        at = scalar(prom, 'max(timestamp(helm_requests_total{job="helm-router",method="Rank",'
                          'status="OK"}))')
        window_s = int(at - before) + 5
        increase = scalar(
            prom, f'sum(increase(helm_requests_total{{job="helm-router",method="Rank",status="OK"}}'
                  f'[{window_s}s]))', at)
        rate = scalar(
            prom, f'sum(rate(helm_requests_total{{job="helm-router",method="Rank",status="OK"}}'
                  f'[{window_s}s]))', at)
        # The nodes are scraped at their own times: each one's increase at its own last scrape.
        node_increase = 0.0
        for target in node_targets:
            selector = (f'helm_requests_total{{job="helm-node",instance="{target}",method="Rank",'
                        f'status="OK"}}')
            node_at = scalar(prom, f"max(timestamp({selector}))")
            node_increase += scalar(prom, f"sum(increase({selector}[{window_s}s]))", node_at)
        node_rate = node_increase / window_s
        expected_rate = ok / window_s
        print(f"prometheus_test: counters: router {scalar(prom, router_ok):.0f}, nodes "
              f"{scalar(prom, node_ok):.0f}; increase[{window_s}s] {increase:.1f}; rate "
              f"{rate:.3f}/s (router), {node_rate:.3f}/s (nodes) vs {expected_rate:.3f}/s sent OK",
              flush=True)
        for name, value, want in (("increase", increase, ok), ("router rate", rate, expected_rate),
                                  ("node rate", node_rate, expected_rate)):
            if value is None or abs(value - want) > TOLERANCE * want:
                fail(f"{name} {value} is not within {TOLERANCE:.0%} of {want}")
        print(f"HELM_RESULT prometheus_rate_error {abs(rate - expected_rate) / expected_rate:.4f}",
              flush=True)

        # Every metric the dashboard and the alerts use exists in a scrape.
        scraped = scraped_names(http_get(f"http://{node_targets[0]}/metrics")) | scraped_names(
            http_get(f"http://{router_target}/metrics"))
        missing = sorted(used - scraped)
        if missing:
            fail(f"dashboard/alerts use metrics no scrape has: {missing}")
        print(f"prometheus_test: {len(used)} metric names of the dashboard and alerts all scraped",
              flush=True)
        print(f"prometheus_test: PASS in {time.monotonic() - start:.1f} s", flush=True)
    finally:
        stop(prom_process, "prometheus")
        stop(cluster, "helm-cluster")
        if args.keep:
            print(f"prometheus_test: files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

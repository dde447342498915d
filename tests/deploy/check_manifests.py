#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests in docker/kubernetes/ (no cluster needed).

  check_manifests.py --repo <source dir> --bin-dir <dir with helm-node, helm-router>
      Checks the manifests; exit 0 when every check passes, 1 with one line per problem otherwise.
  check_manifests.py --repo ... --bin-dir ... --self-test
      Applies known mistakes to copies of the manifests (a wrong port, an unknown config key, an
      image nothing builds, ...) and checks each copy is rejected naming the mistake.

What is checked:
  * every YAML document parses and has apiVersion, kind and metadata.name; kinds are the ones
    these manifests use, with their stable apiVersion; kustomization.yaml lists every file;
  * every image is tagged by a `docker build -f docker/<Dockerfile> -t <image> .` command in
    README.md, that Dockerfile exists and puts build/bin on PATH; GPU pods use a CUDA build;
  * each container's command runs its binary against the ConfigMap's config, exactly as in the pod
    ($(VAR) filled in, the config file extracted from the mounted ConfigMap) plus --print-config:
    the real config parser accepts it (unknown keys, wrong types and out-of-range values exit 2)
    and prints the effective config, defaults filled in;
  * the containerPorts, the gRPC probe ports, the Services' targetPorts and the Prometheus
    annotations agree with the listen and metrics ports of that effective config;
  * the StatefulSet's headless Service is the name router.dns resolves (router.dns_port is the
    nodes' gRPC port); Service and PodDisruptionBudget selectors pick workload pods;
  * the nodes request nvidia.com/gpu; the router runs 2 replicas;
  * when kubectl is installed, `kubectl kustomize` renders the same set of objects.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

API_VERSIONS = {
    "ConfigMap": "v1",
    "Service": "v1",
    "StatefulSet": "apps/v1",
    "Deployment": "apps/v1",
    "PodDisruptionBudget": "policy/v1",
}
WORKLOAD_KINDS = ("StatefulSet", "Deployment")
# Which config keys give each binary's gRPC listen address and /metrics port.
BINARIES = {
    "helm-node": {"listen": ("node", "listen"), "metrics": ("metrics", "node_port")},
    "helm-router": {"listen": ("router", "listen"), "metrics": ("metrics", "router_port")},
}


class Checker:
    def __init__(self, repo, manifests, bin_dir, readme, use_kubectl=True):
        self.repo = repo
        self.use_kubectl = use_kubectl
        self.manifests = manifests
        self.bin_dir = bin_dir
        self.readme = readme
        self.errors = []
        self.objects = []  # (file, document)
        self.namespace = "default"
        self.effective = {}  # workload name -> (binary, effective config dict)

    def error(self, message):
        self.errors.append(message)

    # ---- parsing ----------------------------------------------------------------------------

    def load(self):
        files = sorted(f for f in os.listdir(self.manifests) if f.endswith((".yaml", ".yml")))
        if "kustomization.yaml" not in files:
            self.error("kustomization.yaml: missing")
        listed = None
        for name in files:
            path = os.path.join(self.manifests, name)
            try:
                with open(path) as f:
                    documents = [d for d in yaml.safe_load_all(f) if d is not None]
            except yaml.YAMLError as e:
                self.error(f"{name}: does not parse: {e}")
                continue
            for i, doc in enumerate(documents):
                where = f"{name} document {i + 1}"
                if not isinstance(doc, dict):
                    self.error(f"{where}: not a mapping")
                    continue
                if doc.get("kind") == "Kustomization":
                    listed = doc.get("resources") or []
                    self.namespace = doc.get("namespace", self.namespace)
                    continue
                for key in ("apiVersion", "kind"):
                    if not doc.get(key):
                        self.error(f"{where}: no {key}")
                if not (doc.get("metadata") or {}).get("name"):
                    self.error(f"{where}: no metadata.name")
                    continue
                kind = doc.get("kind")
                if kind not in API_VERSIONS:
                    self.error(f"{where}: kind {kind!r} is none of {sorted(API_VERSIONS)}")
                elif doc.get("apiVersion") != API_VERSIONS[kind]:
                    self.error(f"{where}: {kind} wants apiVersion {API_VERSIONS[kind]}, "
                               f"got {doc.get('apiVersion')!r}")
                self.objects.append((name, doc))
        if listed is not None:
            others = set(files) - {"kustomization.yaml"}
            if set(listed) != others:
                self.error(f"kustomization.yaml: resources {sorted(listed)} but the folder holds "
                           f"{sorted(others)}")
        seen = set()
        for name, doc in self.objects:
            key = (doc["kind"], doc["metadata"]["name"])
            if key in seen:
                self.error(f"{name}: {key[0]} {key[1]} defined twice")
            seen.add(key)

    def of_kind(self, kind):
        return [doc for _, doc in self.objects if doc.get("kind") == kind]

    def find(self, kind, name):
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        return None

    # ---- images -----------------------------------------------------------------------------

    def built_images(self):
        """image tag -> Dockerfile path, from the `docker build` commands in README.md."""
        images = {}
        with open(self.readme) as f:
            text = f.read()
        for m in re.finditer(r"docker build\b([^\n`]*)", text):
            args = m.group(1).split()
            dockerfile = tag = None
            for flag, value in zip(args, args[1:]):
                if flag in ("-f", "--file"):
                    dockerfile = value
                elif flag in ("-t", "--tag"):
                    tag = value
            if dockerfile and tag:
                images[tag] = dockerfile
        return images

    def check_image(self, where, image, wants_gpu):
        images = self.built_images()
        if image not in images:
            self.error(f"{where}: image {image!r} is not tagged by any `docker build -f ... -t ...` "
                       f"in README.md (those tag {sorted(images)})")
            return
        dockerfile = os.path.join(self.repo, images[image])
        if not os.path.isfile(dockerfile):
            self.error(f"{where}: image {image!r} is built from {images[image]}, which is missing")
            return
        with open(dockerfile) as f:
            text = f.read()
        if not re.search(r"^ENV PATH=\S*/build/bin", text, re.M):
            self.error(f"{where}: {images[image]} does not put build/bin on PATH")
        if wants_gpu and "HELM_WITH_CUDA=ON" not in text:
            self.error(f"{where}: requests a GPU but {images[image]} is not a CUDA build")

    # ---- workloads --------------------------------------------------------------------------

    def check_workloads(self):
        for kind in WORKLOAD_KINDS:
            for doc in self.of_kind(kind):
                self.check_workload(doc)
        statefulsets = self.of_kind("StatefulSet")
        deployments = self.of_kind("Deployment")
        if len(statefulsets) != 1 or len(deployments) != 1:
            self.error(f"want one StatefulSet (nodes) and one Deployment (router), got "
                       f"{len(statefulsets)} and {len(deployments)}")
            return
        nodes, router = statefulsets[0], deployments[0]
        if self.binary_of(nodes) != "helm-node" or self.binary_of(router) != "helm-router":
            self.error("the StatefulSet must run helm-node and the Deployment helm-router")
            return
        for container in self.containers(nodes):
            if str(self.resources(container, "limits").get("nvidia.com/gpu")) != "1":
                self.error(f"StatefulSet {self.name(nodes)}: container {container.get('name')} "
                           f"does not limit nvidia.com/gpu to 1")
        if router["spec"].get("replicas") != 2:
            self.error(f"Deployment {self.name(router)}: replicas "
                       f"{router['spec'].get('replicas')}, want 2")
        self.check_discovery(nodes, router)

    @staticmethod
    def name(doc):
        return doc["metadata"]["name"]

    @staticmethod
    def containers(doc):
        return ((doc.get("spec") or {}).get("template", {}).get("spec", {})
                .get("containers") or [])

    @staticmethod
    def resources(container, which):
        return (container.get("resources") or {}).get(which) or {}

    def binary_of(self, doc):
        containers = self.containers(doc)
        if not containers:
            return None
        command = (containers[0].get("command") or []) + (containers[0].get("args") or [])
        return command[0] if command else None

    def check_workload(self, doc):
        where = f"{doc['kind']} {self.name(doc)}"
        spec = doc.get("spec") or {}
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        if not match or any(labels.get(k) != v for k, v in match.items()):
            self.error(f"{where}: selector {match} does not match the pod labels {labels}")
        containers = self.containers(doc)
        if len(containers) != 1:
            self.error(f"{where}: want one container, got {len(containers)}")
            return
        container = containers[0]
        wants_gpu = "nvidia.com/gpu" in self.resources(container, "limits")
        self.check_image(where, container.get("image"), wants_gpu)
        command = (container.get("command") or []) + (container.get("args") or [])
        if not command or command[0] not in BINARIES:
            self.error(f"{where}: command {command} runs none of {sorted(BINARIES)}")
            return
        binary = command[0]
        config = self.run_print_config(where, template.get("spec") or {}, container, command)
        if config is None:
            return
        self.effective[self.name(doc)] = (binary, config)
        keys = BINARIES[binary]
        listen = get(config, keys["listen"])
        host, _, port = str(listen).rpartition(":")
        if host not in ("0.0.0.0", "[::]"):
            self.error(f"{where}: {'.'.join(keys['listen'])} is {listen}: other pods cannot "
                       f"reach it (listen on 0.0.0.0)")
        grpc_port = int(port)
        metrics_port = int(get(config, keys["metrics"]))
        metrics_address = get(config, ("metrics", "address"))
        self.check_ports(where, template, container, grpc_port, metrics_port, metrics_address)

    def run_print_config(self, where, pod_spec, container, command):
        """Runs the container's command with --print-config; returns the effective config."""
        try:
            config_path = command[command.index("--config") + 1]
        except (ValueError, IndexError):
            self.error(f"{where}: command {command} passes no --config")
            return None
        text = self.mounted_file(where, pod_spec, container, config_path)
        if text is None:
            return None
        env = {}
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
            elif (var.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == \
                    "metadata.name":
                env[var["name"]] = "helm-pod-0"
        argv = []
        for arg in command:
            def expand(m):
                if m.group(1) not in env:
                    self.error(f"{where}: $({m.group(1)}) in the command is no env variable")
                return env.get(m.group(1), "")
            argv.append(re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, arg))
        binary = os.path.join(self.bin_dir, argv[0])
        if not os.access(binary, os.X_OK):
            self.error(f"{where}: {argv[0]} is not built ({binary})")
            return None
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
            extracted = f.name
        try:
            argv[argv.index("--config") + 1] = extracted
            result = subprocess.run([binary] + argv[1:] + ["--print-config"], capture_output=True,
                                    text=True, timeout=60)
        finally:
            os.unlink(extracted)
        if result.returncode != 0:
            self.error(f"{where}: `{' '.join(command)} --print-config` exits "
                       f"{result.returncode}: {(result.stderr or result.stdout).strip()}")
            return None
        return yaml.safe_load(result.stdout)

    def mounted_file(self, where, pod_spec, container, path):
        """The text of `path` as the container sees it, from a mounted ConfigMap."""
        volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            mount_path = mount.get("mountPath", "").rstrip("/")
            if not path.startswith(mount_path + "/"):
                continue
            key = path[len(mount_path) + 1:]
            volume = volumes.get(mount.get("name"))
            if volume is None or "configMap" not in volume:
                self.error(f"{where}: {path} is mounted from {mount.get('name')!r}, which is no "
                           f"configMap volume")
                return None
            configmap = self.find("ConfigMap", volume["configMap"].get("name"))
            if configmap is None:
                self.error(f"{where}: ConfigMap {volume['configMap'].get('name')!r} is not defined")
                return None
            data = configmap.get("data") or {}
            if key not in data:
                self.error(f"{where}: ConfigMap {self.name(configmap)} has no key {key!r} "
                           f"(has {sorted(data)})")
                return None
            return data[key]
        self.error(f"{where}: no volume is mounted where --config {path} points")
        return None

    def check_ports(self, where, template, container, grpc_port, metrics_port, metrics_address):
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        if grpc_port not in ports.values():
            self.error(f"{where}: no containerPort for the gRPC port {grpc_port} "
                       f"(has {sorted(ports.values())})")
        for name, port in ports.items():
            if port not in (grpc_port, metrics_port):
                self.error(f"{where}: containerPort {name}={port} is neither the gRPC port "
                           f"{grpc_port} nor the metrics port {metrics_port}")
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                self.error(f"{where}: no {probe}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe not in container:
                continue
            grpc = container[probe].get("grpc")
            if grpc is None:
                self.error(f"{where}: {probe} is not a gRPC health probe")
                continue
            port = ports.get(grpc.get("port"), grpc.get("port"))
            if port != grpc_port:
                self.error(f"{where}: {probe} checks port {grpc.get('port')}, the server listens "
                           f"on {grpc_port}")
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true":
            self.error(f"{where}: no prometheus.io/scrape: \"true\" annotation")
            return
        if metrics_port <= 0:
            self.error(f"{where}: scraped, but its /metrics port is {metrics_port} (off or random)")
        if str(annotations.get("prometheus.io/port")) != str(metrics_port):
            self.error(f"{where}: prometheus.io/port is {annotations.get('prometheus.io/port')}, "
                       f"the metrics port is {metrics_port}")
        if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
            self.error(f"{where}: prometheus.io/path is not /metrics")
        if metrics_port not in ports.values():
            self.error(f"{where}: no containerPort for the metrics port {metrics_port}")
        if metrics_address not in ("0.0.0.0", "::"):
            self.error(f"{where}: metrics.address is {metrics_address}: Prometheus cannot reach it "
                       f"from outside the pod")

    # ---- services, discovery, budgets -------------------------------------------------------

    def selected_workloads(self, selector):
        found = []
        for kind in WORKLOAD_KINDS:
            for doc in self.of_kind(kind):
                labels = (doc["spec"].get("template", {}).get("metadata") or {}).get("labels") or {}
                if selector and all(labels.get(k) == v for k, v in selector.items()):
                    found.append(doc)
        return found

    def check_services(self):
        for svc in self.of_kind("Service"):
            where = f"Service {self.name(svc)}"
            spec = svc.get("spec") or {}
            workloads = self.selected_workloads(spec.get("selector") or {})
            if not workloads:
                self.error(f"{where}: selector {spec.get('selector')} picks no workload's pods")
                continue
            for workload in workloads:
                container = self.containers(workload)[0]
                ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
                for port in spec.get("ports") or []:
                    target = port.get("targetPort", port.get("port"))
                    resolved = ports.get(target, target)
                    if resolved not in ports.values():
                        self.error(f"{where}: port {port.get('name')} targets {target}, which "
                                   f"{workload['kind']} {self.name(workload)} does not expose "
                                   f"(containerPorts {sorted(ports.values())})")
        for pdb in self.of_kind("PodDisruptionBudget"):
            selector = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not self.selected_workloads(selector):
                self.error(f"PodDisruptionBudget {self.name(pdb)}: selector {selector} picks no "
                           f"workload's pods")
        for kind in WORKLOAD_KINDS:
            for doc in self.of_kind(kind):
                labels = doc["spec"]["template"]["metadata"].get("labels") or {}
                if not any(all(labels.get(k) == v for k, v in
                               (((p.get("spec") or {}).get("selector") or {})
                                .get("matchLabels") or {}).items())
                           for p in self.of_kind("PodDisruptionBudget")):
                    self.error(f"{kind} {self.name(doc)}: no PodDisruptionBudget covers it")

    def check_discovery(self, nodes, router):
        where = f"StatefulSet {self.name(nodes)}"
        service_name = nodes["spec"].get("serviceName")
        service = self.find("Service", service_name)
        if service is None:
            self.error(f"{where}: serviceName {service_name!r} is no Service here")
            return
        if service["spec"].get("clusterIP") != "None":
            self.error(f"Service {service_name}: not headless (clusterIP: None)")
        if nodes not in self.selected_workloads(service["spec"].get("selector") or {}):
            self.error(f"Service {service_name}: does not select the node pods")
        if self.name(router) not in self.effective or self.name(nodes) not in self.effective:
            return
        router_config = self.effective[self.name(router)][1]["router"]
        node_config = self.effective[self.name(nodes)][1]
        names = {service_name, f"{service_name}.{self.namespace}",
                 f"{service_name}.{self.namespace}.svc",
                 f"{service_name}.{self.namespace}.svc.cluster.local"}
        if router_config.get("dns") not in names:
            self.error(f"router.dns is {router_config.get('dns')!r}: it does not resolve to the "
                       f"headless Service {service_name} in namespace {self.namespace} (want one "
                       f"of {sorted(names)})")
        node_port = int(str(node_config["node"]["listen"]).rpartition(":")[2])
        if router_config.get("dns_port") != node_port:
            self.error(f"router.dns_port is {router_config.get('dns_port')}, the nodes listen on "
                       f"{node_port}")

    def check_kubectl(self):
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            print("kubectl: not installed, kustomize rendering not checked")
            return
        try:
            result = subprocess.run([kubectl, "kustomize", self.manifests], capture_output=True,
                                    text=True, timeout=60)
        except subprocess.TimeoutExpired:
            print("kubectl kustomize: timed out, not checked")
            return
        if result.returncode != 0:
            self.error(f"kubectl kustomize: {result.stderr.strip()}")
            return
        rendered = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
                    for d in yaml.safe_load_all(result.stdout) if d}
        ours = {(d["kind"], d["metadata"]["name"], self.namespace) for _, d in self.objects}
        if rendered != ours:
            self.error(f"kubectl kustomize renders {sorted(rendered)}, the files hold "
                       f"{sorted(ours)}")
        else:
            print(f"kubectl kustomize: renders the same {len(rendered)} objects")

    def run(self):
        self.load()
        if self.errors:
            return self.errors
        self.check_workloads()
        self.check_services()
        if self.use_kubectl:
            self.check_kubectl()
        return self.errors


def get(config, path):
    value = config
    for key in path:
        value = (value or {}).get(key)
    return value


def check(repo, manifests, bin_dir, readme, use_kubectl=True):
    return Checker(repo, manifests, bin_dir, readme, use_kubectl).run()


# ---- self-test: each known mistake must be caught --------------------------------------------

def mutate_yaml(name, fn):
    """A mutation that loads `name`, applies fn to its documents and writes it back."""
    def apply(folder):
        path = os.path.join(folder, name)
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        fn(docs)
        with open(path, "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
    return apply


def doc_of(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


def container_of(docs, kind):
    return doc_of(docs, kind)["spec"]["template"]["spec"]["containers"][0]


def set_config(docs, old, new):
    data = doc_of(docs, "ConfigMap")["data"]
    assert old in data["config.yaml"], old
    data["config.yaml"] = data["config.yaml"].replace(old, new)


MUTATIONS = [
    ("service targetPort", "targets 50062",
     mutate_yaml("nodes.yaml", lambda d: doc_of(d, "Service")["spec"]["ports"][0]
                 .update(targetPort=50062))),
    ("probe port", "checks port 50070",
     mutate_yaml("router.yaml", lambda d: container_of(d, "Deployment")["readinessProbe"]["grpc"]
                 .update(port=50070))),
    ("listen port in the config", "the server listens on 50099",
     mutate_yaml("config.yaml", lambda d: set_config(d, "listen: 0.0.0.0:50061",
                                                     "listen: 0.0.0.0:50099"))),
    ("unknown config key", "unknown key",
     mutate_yaml("config.yaml", lambda d: set_config(d, "  workers: 4", "  workerz: 4"))),
    ("router dns", "does not resolve to the headless Service",
     mutate_yaml("config.yaml", lambda d: set_config(d, "dns: helm-nodes.", "dns: helm-nodez."))),
    ("image", "is not tagged by any",
     mutate_yaml("router.yaml", lambda d: container_of(d, "Deployment")
                 .update(image="helm-server:nope"))),
    ("metrics annotation", "prometheus.io/port is 9999",
     mutate_yaml("nodes.yaml", lambda d: doc_of(d, "StatefulSet")["spec"]["template"]["metadata"]
                 ["annotations"].update({"prometheus.io/port": "9999"}))),
    ("missing kind", "no kind",
     mutate_yaml("router.yaml", lambda d: doc_of(d, "PodDisruptionBudget").update(kind=""))),
    ("config mount", "no volume is mounted",
     mutate_yaml("nodes.yaml", lambda d: container_of(d, "StatefulSet")["volumeMounts"][0]
                 .update(mountPath="/etc/other"))),
    ("no GPU", "does not limit nvidia.com/gpu",
     mutate_yaml("nodes.yaml", lambda d: container_of(d, "StatefulSet")["resources"]["limits"]
                 .pop("nvidia.com/gpu"))),
    ("file missing from kustomization", "kustomization.yaml: resources",
     lambda folder: shutil.copy(os.path.join(folder, "router.yaml"),
                                os.path.join(folder, "extra.yaml"))),
]


def self_test(repo, manifests, bin_dir, readme):
    failures = []
    for label, expected, mutate in MUTATIONS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "kubernetes")
            shutil.copytree(manifests, folder)
            mutate(folder)
            errors = check(repo, folder, bin_dir, readme, use_kubectl=False)
        if not any(expected in e for e in errors):
            failures.append(f"{label}: not caught (want an error with {expected!r}, got {errors})")
        else:
            print(f"caught: {label}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="the source tree")
    parser.add_argument("--bin-dir", required=True, help="where helm-node and helm-router are")
    parser.add_argument("--manifests", help="default: <repo>/docker/kubernetes")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    manifests = args.manifests or os.path.join(args.repo, "docker", "kubernetes")
    readme = os.path.join(args.repo, "README.md")
    if args.self_test:
        errors = self_test(args.repo, manifests, args.bin_dir, readme)
    else:
        errors = check(args.repo, manifests, args.bin_dir, readme)
    for e in errors:
        print(f"FAIL {e}")
    if errors:
        return 1
    print("OK" if not args.self_test else f"OK: all {len(MUTATIONS)} mistakes caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())

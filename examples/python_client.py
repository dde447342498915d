#!/usr/bin/python3
"""A short HELM client in Python: sends one Rank request to a router (or a node) and prints the
ranked items and where they were served. Uses Debian's python3-grpcio and python3-protobuf; the
message classes are generated from proto/helm/v1/recommender.proto with protoc at start.

    /usr/bin/python3 examples/python_client.py --target 127.0.0.1:50060 --user 7

With TLS (grpc.tls in the cluster's config): --tls, the CA that signed the server's certificate
with --ca (default: the system's roots), and a client certificate with --cert/--key under mTLS
(grpc.tls.require_client_cert); --server-name when the certificate names another host:

    /usr/bin/python3 examples/python_client.py --target 127.0.0.1:50060 --tls --ca ca.pem \
        --cert client.pem --key client.key
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_messages():
    """Generates recommender_pb2 into a temporary directory and imports it."""
    out = tempfile.mkdtemp(prefix="helm-py-")
    subprocess.run(["protoc", f"-I{REPO}/proto", f"--python_out={out}",
                    f"{REPO}/proto/helm/v1/recommender.proto"], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("helm.v1.recommender_pb2")


def read(path):
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def make_channel(args):
    """A plaintext channel, or a TLS one (grpc.ssl_channel_credentials) with --tls/--ca/--cert."""
    if not (args.tls or args.ca or args.cert):
        return grpc.insecure_channel(args.target)
    credentials = grpc.ssl_channel_credentials(root_certificates=read(args.ca),
                                               private_key=read(args.key),
                                               certificate_chain=read(args.cert))
    options = []
    if args.server_name:
        options.append(("grpc.ssl_target_name_override", args.server_name))
    return grpc.secure_channel(args.target, credentials, options=options)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50060", help="router or node host:port")
    parser.add_argument("--user", type=int, default=7)
    parser.add_argument("--history", type=int, default=50, help="history events to send")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca", help="CA certificates verifying the server, PEM (implies --tls)")
    parser.add_argument("--cert", help="client certificate for mTLS, PEM (implies --tls)")
    parser.add_argument("--key", help="client private key for mTLS, PEM")
    parser.add_argument("--server-name", help="name to check in the server's certificate")
    args = parser.parse_args()
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")

    pb = load_messages()
    request = pb.RankRequest(user_id=args.user, top_k=args.top_k, request_id="python-client")
    # A deterministic history per user: a later call with a longer --history extends it, so the
    # node serving the user reuses the K/V of the common prefix (see cached_tokens in the reply).
    start_ms = 1_700_000_000_000 + args.user * 1_000
    for i in range(args.history):
        request.history_item_ids.append((args.user * 31 + i * 17) % 1000)
        request.history_actions.append(i % 3)
        request.history_timestamps_ms.append(start_ms + i * 60_000)
    request.candidate_item_ids.extend(range(100, 100 + args.candidates))

    channel = make_channel(args)
    rank = channel.unary_unary("/helm.v1.Recommender/Rank",
                               request_serializer=pb.RankRequest.SerializeToString,
                               response_deserializer=pb.RankResponse.FromString)
    try:
        response = rank(request, timeout=args.timeout)
    except grpc.RpcError as error:
        print(f"Rank failed: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    print(f"request {response.request_id} served by {response.info.node_id}: "
          f"{response.info.cached_tokens} cached / {response.info.computed_tokens} computed "
          f"history tokens, EMB {response.info.emb_hits} hits / {response.info.emb_misses} misses")
    for rank_index, item in enumerate(response.items, 1):
        print(f"  {rank_index}. item {item.item_id}  score {item.score:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of jaxretrieval.metrics and jaxretrieval.centers against the references' formulations.

CIFAR-10 protocol II sizes: 10,000 queries x 50,000 database items, 64-bit random codes, 10 classes
(one-hot). Peer: the DeepHash-pytorch ``CalcTopMap`` loop (one numpy argsort per query), written
here with a *stable* argsort so its values are exactly comparable, and without its top-k=-1
off-by-one, run with one BLAS thread (faster for it than two on a shared CPU). The peer is slow (about 25 s per full run on an idle 2-core machine), so by default it
runs on the first ``--peer-queries`` queries and its time is scaled to all queries (said in the
output); ``--peer-queries 10000`` runs it in full. Values are checked equal on the peer's queries.

Run (by hand, not part of the test suite):

    nice .venv/bin/python benchmarks/metrics.py [--peer-queries 1000] [--repeats 3]
"""
import argparse
import os
import platform
import statistics
import time

import jax
import numpy as np
from threadpoolctl import threadpool_limits  # installed with scikit-learn (the [train] extra)

from jaxretrieval.centers import center_distance_stats, hash_centers
from jaxretrieval.metrics import mean_average_precision


def calc_top_map(query_codes, db_codes, query_labels, db_labels, top_k):
    """DeepHash-pytorch CalcTopMap (utils/tools.py), with a stable argsort and no off-by-one."""
    num_bits = query_codes.shape[1]
    total = 0.0
    for query in range(query_codes.shape[0]):
        relevant = (query_labels[query] @ db_labels.T > 0).astype(np.float32)
        hamming = 0.5 * (num_bits - query_codes[query] @ db_codes.T)
        order = np.argsort(hamming, kind="stable")
        top = relevant[order][:top_k]
        found = int(top.sum())
        if found == 0:
            continue
        total += np.mean(np.linspace(1, found, found) / (np.flatnonzero(top == 1) + 1.0))
    return total / query_codes.shape[0]


def timed(function, repeats):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-queries", type=int, default=10_000)
    parser.add_argument("--num-database", type=int, default=50_000)
    parser.add_argument("--num-bits", type=int, default=64)
    parser.add_argument("--peer-queries", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    print(f"python {platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}")
    rng = np.random.default_rng(0)
    query_codes = rng.choice([-1, 1], size=(args.num_queries, args.num_bits)).astype(np.float32)
    db_codes = rng.choice([-1, 1], size=(args.num_database, args.num_bits)).astype(np.float32)
    query_labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.num_queries)]
    db_labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.num_database)]
    mean_average_precision(query_codes[:8], db_codes, query_labels[:8], db_labels, top_k=1000)  # compile

    print(f"\nmAP, {args.num_queries} queries x {args.num_database} database x {args.num_bits} bits "
          f"(medians of {args.repeats}; peer on {args.peer_queries} queries, scaled)")
    print(f"{'metric':<22}{'ours s':>10}{'peer s':>12}{'ratio':>9}  values equal")
    peer = slice(0, args.peer_queries)
    for name, top_k in (("mAP@1000", 1000), ("mAP@all", None)):
        ours_seconds, ours_value = timed(
            lambda: mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=top_k), args.repeats
        )
        # One BLAS thread for the peer: its matrix-vector products gain nothing from threads, and
        # threads spinning on a shared 2-core CPU made it 3x slower (measured).
        with threadpool_limits(1):
            peer_seconds, peer_value = timed(
                lambda: calc_top_map(query_codes[peer], db_codes, query_labels[peer], db_labels, top_k or args.num_database), 1
            )
        peer_seconds *= args.num_queries / args.peer_queries
        ours_on_peer_queries = mean_average_precision(query_codes[peer], db_codes, query_labels[peer], db_labels, top_k=top_k)
        equal = abs(ours_on_peer_queries - peer_value) < 1e-9
        print(f"{name:<22}{ours_seconds:>10.2f}{peer_seconds:>12.1f}{peer_seconds / ours_seconds:>8.1f}x  "
              f"{equal} ({ours_on_peer_queries:.10f} vs {peer_value:.10f}); full mAP {ours_value:.6f}")
        assert equal, "values differ"
    for name, top_k in (("tie-aware mAP@1000", 1000), ("tie-aware mAP@all", None)):
        seconds, value = timed(
            lambda: mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=top_k, tie_aware=True),
            args.repeats,
        )
        print(f"{name:<22}{seconds:>10.2f}{'-':>12}{'-':>9}  (value {value:.6f})")

    print("\nhash_centers (random balanced rows, default min_distance = num_bits // 4)")
    for num_classes, num_bits in ((40_000, 64), (1_000, 48)):
        seconds, centers = timed(lambda: hash_centers(num_classes, num_bits, key=jax.random.key(0)), args.repeats)
        stats = center_distance_stats(centers)
        print(f"  {num_classes} x {num_bits}: {seconds:.2f} s, min distance {stats['min_distance']}, "
              f"mean distance {stats['mean_distance']:.2f}")


if __name__ == "__main__":
    main()

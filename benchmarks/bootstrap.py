"""Bootstrap interval of IdCor: freqmaps.bootstrap.bootstrap_idcor (a resample's squared distances are a
row/column gather of the two matrices computed once) versus recomputing every distance of each resample
(`squared_distances` of the resampled rows of A, E and [A | E]), same data, same resamples, same run.

    python -m benchmarks.bootstrap [--n 2000] [--d 3072] [--resamples 1000] [--naive-resamples 5] [--out PATH]

Both ways standardise the full sample once (as bootstrap_idcor does) and find each distinct resampled point's
neighbours among the other distinct ones, counting its ratio as often as it is drawn. The naive way runs --naive-resamples resamples (the first ones of the same draw) and its time for
all --resamples is extrapolated from their mean (said so in the output and the JSON); their IdCor values must
equal the fast way's. Ends with `speedup: X` (naive over fast). Writes benchmarks/results/bootstrap.json.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from benchmarks.common import write_json
from benchmarks.correlation import paired_sets
from freqmaps.bootstrap import bootstrap_idcor, resample_indices
from freqmaps.correlation import idcor_score, squared_distances, standardize_rows
from freqmaps.intrinsic_dimension import TwoNN


def naive_resample(A: torch.Tensor, E: torch.Tensor, b: torch.Tensor) -> float:
    """IdCor of resample b (m,) from fresh squared distances among its distinct rows (A, E standardised: (n, d)
    float64), computed and stored as bootstrap_idcor's (`squared_distances`, float32), each distinct row's
    ratio counted as often as b draws it."""
    u, counts = torch.unique(b, return_counts=True)

    def dimension(X: torch.Tensor) -> float:
        D = squared_distances(X, dtype=torch.float32).fill_diagonal_(math.inf)
        r = D.topk(2, dim=1, largest=False).values.repeat_interleave(counts, 0)
        return TwoNN().estimate(r, squared=True).dimension

    a, e = A[u], E[u]
    return idcor_score(dimension(a), dimension(e), dimension(torch.cat([a, e], 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=3072, help="features per set (3 x 32 x 32 maps: 3072)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive-resamples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"n={args.n} d={args.d} resamples={args.resamples}  torch threads={torch.get_num_threads()}  "
          f"load average {load[0]:.2f}")
    A, E = paired_sets(args.n, args.d, args.seed)
    bootstrap_idcor(A[:200], E[:200], resamples=2)  # warm-up, untimed

    start = time.perf_counter()
    fast = bootstrap_idcor(A, E, resamples=args.resamples, seed=args.seed)
    fast_s = time.perf_counter() - start
    print(f"fast  : {fast_s:8.2f} s   idcor={fast.estimate:.5f}  95% interval [{fast.low:.4f}, {fast.high:.4f}]")

    A_std, E_std = standardize_rows(A), standardize_rows(E)
    draws = resample_indices(args.n, args.resamples, args.seed)[: args.naive_resamples]
    start = time.perf_counter()
    naive_values = [naive_resample(A_std, E_std, b) for b in draws]
    naive_measured = time.perf_counter() - start
    per_resample = naive_measured / len(draws)
    naive_s = per_resample * args.resamples
    diff = max(abs(a - b) for a, b in zip(naive_values, fast.values[: len(draws)].tolist()))
    print(f"naive : {naive_s:8.2f} s   (extrapolated from {len(draws)} resamples, {per_resample:.2f} s each)")
    print(f"same values: {len(draws)} resampled IdCors, max absolute difference {diff:.1e}")
    if diff > 1e-6:
        raise SystemExit(f"fast and naive resampled IdCor differ by {diff:.1e}")
    speedup = naive_s / fast_s
    write_json("bootstrap", {
        "n": args.n, "d": args.d, "resamples": args.resamples, "seed": args.seed, "fast_s": fast_s,
        "naive_s": naive_s, "naive_extrapolated_from": len(draws), "naive_s_per_resample": per_resample,
        "max_absolute_difference": diff, "speedup": speedup, "load_average_before": load[0],
        "interval": {"estimate": fast.estimate, "low": fast.low, "high": fast.high, "level": fast.level},
    }, args.out)
    print(f"speedup: {speedup:.1f}")


if __name__ == "__main__":
    main()

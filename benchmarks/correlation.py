"""IdCor with its permutation p-value: freqmaps.correlation.idcor (squared distances add, D_J = D_A + P D_E P^T,
so a permutation costs O(n^2)) versus the paper's way (concatenate [A | E[perm]] and recompute every distance
with torch.cdist for each permutation, O(n^2 d)), same data, same permutations, same run.

    python -m benchmarks.correlation [--n 2000] [--d 3072] [--permutations 100] [--naive-permutations N]
                                     [--naive-dtype float32] [--large-n 10000] [--out PATH]

Checks that both give the same dimensions (id_A, id_E, id_J and every shuffled id_J), prints the times and the
time of the fast path at n = --large-n, and ends with `speedup: X` (naive time over fast time). The fast path is
timed before and after the naive one and the slower time counts (the cores may be shared). With
--naive-permutations below --permutations the naive time is extrapolated from its per-permutation cost (said
so in the output and the JSON). Writes benchmarks/results/correlation.json.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from benchmarks.common import write_json
from freqmaps.correlation import idcor, standardize_rows, twonn


def paired_sets(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two nonlinearly related sets driven by one 8-dimensional latent, plus noise: A, E (n, d) float32."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=g)
    A = torch.tanh(z @ torch.randn(8, d, generator=g)) + 0.1 * torch.randn(n, d, generator=g)
    E = torch.sigmoid(z @ torch.randn(8, d, generator=g)) + 0.1 * torch.randn(n, d, generator=g)
    return A, E


def naive_idcor(A: torch.Tensor, E: torch.Tensor, permutations: int, seed: int, dtype: torch.dtype) -> dict:
    """The paper's computation (Basile et al.'s `id_correlation`): TwoNN of A, E and [A | E] from full
    torch.cdist matrices, then one fresh concatenation and cdist per permutation. The k-th permutation is the
    k-th torch.randperm of a CPU generator seeded with `seed`, as in freqmaps.correlation.idcor.
    Returns the dimensions and the seconds spent before the permutations and on them."""
    start = time.perf_counter()
    A, E = standardize_rows(A).to(dtype), standardize_rows(E).to(dtype)

    def dimension(X: torch.Tensor) -> float:
        return twonn(torch.cdist(X, X), distances=True)

    result = {"id_a": dimension(A), "id_e": dimension(E), "id_joint": dimension(torch.cat([A, E], 1))}
    result["base_seconds"] = time.perf_counter() - start
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    result["null"] = [dimension(torch.cat([A, E[torch.randperm(len(A), generator=g)]], 1))
                      for _ in range(permutations)]
    result["permutation_seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=3072, help="features per set (3 x 32 x 32 maps: 3072)")
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--naive-permutations", type=int, default=None,
                        help="permutations the naive way actually runs (default: all); fewer = extrapolated time")
    parser.add_argument("--naive-dtype", choices=["float32", "float64"], default="float32",
                        help="dtype of the naive cdist (the paper's maps are float32)")
    parser.add_argument("--large-n", type=int, default=10000, help="n of the fast-only run (0 skips it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    naive_permutations = args.permutations if args.naive_permutations is None else args.naive_permutations
    load_before = os.getloadavg()
    print(f"n={args.n} d={args.d} permutations={args.permutations}  torch threads={torch.get_num_threads()}  "
          f"load average {load_before[0]:.2f}")

    A, E = paired_sets(args.n, args.d, args.seed)
    idcor(A[:200], E[:200], permutations=2)  # warm-up (allocator, kernels), untimed
    naive_idcor(A[:200], E[:200], 2, args.seed, getattr(torch, args.naive_dtype))

    def run_fast():
        start = time.perf_counter()
        result = idcor(A, E, permutations=args.permutations, seed=args.seed)
        return result, time.perf_counter() - start

    fast, fast_before_s = run_fast()
    print(f"fast  : {fast_before_s:8.2f} s   idcor={fast.idcor:.5f}  p={fast.p_value:.4f}  id_A={fast.id_a:.4f}  "
          f"id_E={fast.id_e:.4f}  id_J={fast.id_joint:.4f}")

    naive = naive_idcor(A, E, naive_permutations, args.seed, getattr(torch, args.naive_dtype))
    naive_s = naive["base_seconds"] + naive["permutation_seconds"]
    naive_per_permutation = naive["permutation_seconds"] / max(naive_permutations, 1)
    extrapolated = naive_permutations < args.permutations
    naive_total = naive["base_seconds"] + naive_per_permutation * args.permutations if extrapolated else naive_s
    naive_idcor_value = ((naive["id_a"] + naive["id_e"] - naive["id_joint"])
                         / (naive["id_a"] + naive["id_e"] - min(naive["id_a"], naive["id_e"])))
    naive_p = ((sum(v < naive["id_joint"] for v in naive["null"]) + 1) / (naive_permutations + 1)
               if not extrapolated else None)
    pairs = [(fast.id_a, naive["id_a"]), (fast.id_e, naive["id_e"]), (fast.id_joint, naive["id_joint"]),
             *zip(fast.null.tolist()[:naive_permutations], naive["null"])]
    max_rel_diff = max(abs(a - b) / abs(b) for a, b in pairs)
    label = f"extrapolated from {naive_permutations} permutations" if extrapolated else "measured"
    print(f"naive : {naive_total:8.2f} s   ({label}; {naive['base_seconds']:.2f} s for id_A, id_E, id_J + "
          f"{naive_per_permutation:.3f} s per permutation, {args.naive_dtype})  idcor={naive_idcor_value:.5f}"
          + (f"  p={naive_p:.4f}" if naive_p is not None else ""))
    print(f"same values: {len(pairs)} dimensions compared (id_A, id_E, id_J and {len(pairs) - 3} shuffled id_J), "
          f"max relative difference {max_rel_diff:.1e}")
    if max_rel_diff > 1e-4:
        raise SystemExit(f"fast and naive dimensions differ by {max_rel_diff:.1e} relative")
    again, fast_after_s = run_fast()  # timed again after the naive run; the slower of the two counts
    assert torch.equal(again.null, fast.null)
    fast_s = max(fast_before_s, fast_after_s)
    print(f"fast again after naive: {fast_after_s:.2f} s; counted: {fast_s:.2f} s (the slower)")
    speedup = naive_total / fast_s
    print(f"ratio naive/fast at n={args.n}: {speedup:.1f}x")

    large = None
    if args.large_n:
        A_large, E_large = paired_sets(args.large_n, args.d, args.seed + 1)
        start = time.perf_counter()
        result = idcor(A_large, E_large, permutations=args.permutations, seed=args.seed)
        large_s = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"fast n={args.large_n}: {large_s:8.2f} s with {args.permutations} permutations   "
              f"idcor={result.idcor:.5f}  p={result.p_value:.4f}  peak RSS of the process {peak_gb:.2f} GB")
        large = {"n": args.large_n, "seconds": large_s, "idcor": result.idcor, "p_value": result.p_value,
                 "id_a": result.id_a, "id_e": result.id_e, "id_joint": result.id_joint,
                 "peak_rss_gb": peak_gb}

    write_json("correlation", {
        "n": args.n, "d": args.d, "permutations": args.permutations, "seed": args.seed,
        "fast_s": fast_s, "fast_before_after_naive_s": [fast_before_s, fast_after_s],
        "naive_s": naive_total, "naive_measured_s": naive_s, "naive_permutations_run": naive_permutations,
        "naive_extrapolated": extrapolated, "naive_dtype": args.naive_dtype,
        "naive_base_s": naive["base_seconds"], "naive_s_per_permutation": naive_per_permutation,
        "speedup": speedup,
        "max_relative_difference_of_dimensions": max_rel_diff, "dimensions_compared": len(pairs),
        "fast": {"idcor": fast.idcor, "p_value": fast.p_value, "id_a": fast.id_a, "id_e": fast.id_e,
                 "id_joint": fast.id_joint},
        "naive": {"idcor": naive_idcor_value, "p_value": naive_p, "id_a": naive["id_a"], "id_e": naive["id_e"],
                  "id_joint": naive["id_joint"]},
        "large": large,
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
    }, args.out)
    print(f"speedup: {speedup:.1f}")


if __name__ == "__main__":
    main()

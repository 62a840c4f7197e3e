"""IdCor with a permutation p-value: the distance-sum identity (freqmaps.correlation.idcor) versus the paper's
way (concatenate [A | E[perm]] and recompute every distance for each permutation), same data, same run.

    python -m benchmarks.correlation [--n 2000] [--d 3072] [--permutations 100] [--large-n 10000]

Checks that both give the same joint dimensions, prints the times, the time at n = --large-n, and ends with
`speedup: X` (fast over naive). Writes benchmarks/results/correlation.json.
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import write_json
from freqmaps.correlation import idcor, standardize_rows, twonn


def paired_sets(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two nonlinearly related sets driven by one 8-dimensional latent: A, E (n, d) float32."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=g)
    A = torch.tanh(z @ torch.randn(8, d, generator=g)) + 0.1 * torch.randn(n, d, generator=g)
    E = torch.sigmoid(z @ torch.randn(8, d, generator=g)) + 0.1 * torch.randn(n, d, generator=g)
    return A, E


def naive_idcor(A: torch.Tensor, E: torch.Tensor, permutations: int, seed: int) -> tuple[float, list[float]]:
    """The paper's computation: joint id, then for each permutation a fresh (n, 2d) concatenation and its
    full distance matrix. Returns (id_joint, null ids)."""
    A, E = standardize_rows(A.double()), standardize_rows(E.double())

    def joint_id(rows: torch.Tensor) -> float:
        X = torch.cat([A, E[rows]], 1)
        return twonn(torch.cdist(X, X), distances=True)

    g = torch.Generator().manual_seed(seed)
    return joint_id(torch.arange(len(A))), [joint_id(torch.randperm(len(A), generator=g)) for _ in range(permutations)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=3072)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--large-n", type=int, default=10000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    A, E = paired_sets(args.n, args.d)
    start = time.perf_counter()
    fast = idcor(A, E, permutations=args.permutations, seed=0)
    fast_s = time.perf_counter() - start
    print(f"fast  n={args.n}: {fast_s:.2f} s  idcor={fast.idcor:.4f} p={fast.p_value:.4f} id_joint={fast.id_joint:.4f}")

    start = time.perf_counter()
    naive_joint, naive_null = naive_idcor(A, E, args.permutations, seed=0)
    naive_s = time.perf_counter() - start
    max_diff = max(abs(a - b) for a, b in zip([fast.id_joint, *fast.null.tolist()], [naive_joint, *naive_null]))
    print(f"naive n={args.n}: {naive_s:.2f} s  id_joint={naive_joint:.4f}  max |difference| of joint ids: {max_diff:.2e}")
    if max_diff > 1e-6:
        raise SystemExit(f"fast and naive joint dimensions differ by {max_diff}")

    A_large, E_large = paired_sets(args.large_n, args.d, seed=1)
    start = time.perf_counter()
    large = idcor(A_large, E_large, permutations=args.permutations, seed=0)
    large_s = time.perf_counter() - start
    print(f"fast  n={args.large_n}: {large_s:.1f} s  idcor={large.idcor:.4f} p={large.p_value:.4f}")

    speedup = naive_s / fast_s
    write_json("correlation", {
        "n": args.n, "d": args.d, "permutations": args.permutations, "fast_s": fast_s, "naive_s": naive_s,
        "speedup": speedup, "max_joint_id_difference": max_diff, "idcor": fast.idcor, "p_value": fast.p_value,
        "large_n": args.large_n, "large_n_s": large_s, "large_n_idcor": large.idcor,
    }, args.out)
    print(f"speedup: {speedup:.1f}")


if __name__ == "__main__":
    main()

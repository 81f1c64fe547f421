"""The floor: the bare cost of counting all pair tables of a sampled dense layer on this CPU.

Sampled EI_parts of an ``n -> m`` layer with ``N`` interventions needs, at the very least:

1. ``N x n`` uniform inputs (``torch.rand`` from a seeded generator),
2. the forward pass ``y = act(x W^T + b)`` (one ``addmm`` + the activation),
3. binning both sides (``floor((v - lo) * bins / (hi - lo))``, clamped to the edge bins),
4. counting all ``n * m`` joint tables of ``(X_i, Y_j)`` in one operation.

Everything after that (MI of ``n m`` tiny tables) is negligible at ``N = 10^6``. The floor
counts the tables in one of two ways and the benchmark takes the faster:

* ``"gemm"``: one-hot ``A (N, n*B)`` and ``C (N, m*B)`` in float32, tables ``= A^T C``
  (block ``(i, j)`` of the ``(n B, m B)`` product is table ``(i, j)``); float32 counts are
  exact up to 2^24 per entry, so chunks of <= 2^20 samples are exact and are accumulated
  in float64;
* ``"bincount"``: one ``torch.bincount`` of the combined index
  ``((i B + X_i) m + j) B + Y_j`` over all ``N n m`` (sample, pair) combinations;
* ``"int8"``: the same one-hot GEMM in int8 with int32 accumulation (``torch._int_mm``,
  exact). On this benchmark's CPU (AVX-512) the GEMM is ~5x faster than in float32 and the
  one-hot costs a quarter of the bytes. Skipped where ``torch._int_mm`` is missing.

All run in chunks (``chunk`` samples) so the working set stays in cache. The result is
returned so a test can check that the floor really counts what an estimator must count.
"""

from __future__ import annotations

import time

import torch

FLOOR_METHODS = ("gemm", "bincount", "int8")


def int8_gemm_available() -> bool:
    """Whether ``torch._int_mm`` (int8 x int8 -> int32 GEMM) runs on this CPU build."""
    try:
        a = torch.ones((24, 8), dtype=torch.int8)
        return bool(torch._int_mm(a, a.T.contiguous()).sum() == 24 * 24 * 8)
    except (AttributeError, RuntimeError):
        return False


def count_pair_tables(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    samples: int,
    *,
    bins: int = 8,
    in_range: tuple[float, float] = (0.0, 1.0),
    out_range: tuple[float, float] = (0.0, 1.0),
    method: str = "gemm",
    chunk: int = 2**16,
    seed: int = 0,
) -> torch.Tensor:
    """Count all pair tables of ``sigmoid(x W^T + b)`` over ``samples`` uniform inputs.

    Returns float64 counts ``(n, m, bins, bins)``: entry ``[i, j, a, b]`` is the number of
    samples with ``X_i = a`` and ``Y_j = b``.
    """
    if method not in FLOOR_METHODS:
        raise ValueError(f"method={method!r} is unknown: use one of {FLOOR_METHODS}.")
    w = weight.to(torch.float32)
    m, n = w.shape
    b = torch.zeros(m) if bias is None else bias.to(torch.float32)
    lo, hi = in_range
    olo, ohi = out_range
    gen = torch.Generator().manual_seed(seed)
    acc = torch.zeros((n * bins, m * bins), dtype=torch.float64)
    # combined-index offsets, built once
    in_off = (torch.arange(n) * bins).view(1, n)
    out_off = (torch.arange(m) * bins).view(1, m)
    pair_off = (
        (torch.arange(n).view(n, 1) * bins * m + torch.arange(m).view(1, m)) * bins
    ).view(1, n, m)
    flat = torch.zeros(n * bins * m * bins, dtype=torch.int64) if method == "bincount" else None
    if method == "int8":
        return _count_int8(w, b, samples, bins, in_range, out_range, chunk, gen)
    done = 0
    while done < samples:
        size = min(chunk, samples - done)
        x = torch.rand((size, n), generator=gen) * (hi - lo) + lo
        y = torch.sigmoid(torch.addmm(b, x, w.T))
        xi = ((x - lo) * (bins / (hi - lo))).floor_().clamp_(0, bins - 1).to(torch.int64)
        yi = ((y - olo) * (bins / (ohi - olo))).floor_().clamp_(0, bins - 1).to(torch.int64)
        if method == "gemm":
            a1 = torch.zeros((size, n * bins), dtype=torch.float32)
            a1.scatter_(1, xi + in_off, 1.0)
            c1 = torch.zeros((size, m * bins), dtype=torch.float32)
            c1.scatter_(1, yi + out_off, 1.0)
            acc += (a1.T @ c1).to(torch.float64)
        else:
            key = pair_off + (xi * (m * bins)).unsqueeze(2) + yi.unsqueeze(1)
            flat += torch.bincount(key.view(-1), minlength=flat.numel())
        done += size
    if method == "gemm":
        return acc.view(n, bins, m, bins).permute(0, 2, 1, 3).contiguous()
    return flat.view(n, bins, m, bins).permute(0, 2, 1, 3).to(torch.float64).contiguous()


def _count_int8(
    w: torch.Tensor,
    b: torch.Tensor,
    samples: int,
    bins: int,
    in_range: tuple[float, float],
    out_range: tuple[float, float],
    chunk: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """The ``"int8"`` variant of :func:`count_pair_tables` (same draws, same result layout).

    ``C^T (m B, N) @ A (N, n B)`` in int8 with int32 accumulation: ``A`` is the one-hot of
    the inputs in their natural ``(N, n, B)`` layout, ``C^T`` the one-hot of the (small,
    transposed) outputs, both built by one comparison each and reinterpreted as int8.
    """
    m, n = w.shape
    lo, hi = in_range
    olo, ohi = out_range
    levels = torch.arange(bins, dtype=torch.int8)
    acc = torch.zeros((m * bins, n * bins), dtype=torch.int64)
    done = 0
    while done < samples:
        size = min(chunk, samples - done)
        x = torch.rand((size, n), generator=gen) * (hi - lo) + lo
        y = torch.sigmoid(torch.addmm(b, x, w.T))
        # clamp before the truncating cast, so truncation is the floor of a value >= 0
        xb = ((x - lo) * (bins / (hi - lo))).clamp_(0, bins - 1).to(torch.int8)
        yb = ((y - olo) * (bins / (ohi - olo))).clamp_(0, bins - 1).to(torch.int8)
        a = (xb.unsqueeze(2) == levels).view(size, n * bins)
        ct = (yb.T.contiguous().unsqueeze(1) == levels.view(1, bins, 1)).view(m * bins, size)
        acc += torch._int_mm(ct.view(torch.int8), a.view(torch.int8))
        done += size
    return acc.view(m, bins, n, bins).permute(2, 0, 3, 1).to(torch.float64).contiguous()


def time_floor(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    samples: int,
    *,
    bins: int = 8,
    chunks: tuple[int, ...] = (2**14, 2**16, 2**18),
    repeats: int = 3,
    seed: int = 0,
) -> dict:
    """CPU time (s, min over ``repeats``) of every (method, chunk) variant, and the fastest.

    Returns ``{"variants": {"gemm/65536": seconds, ...}, "best": name, "cpu_s": seconds,
    "wall_s": wall seconds of that best run}``.
    """
    variants: dict[str, float] = {}
    walls: dict[str, float] = {}
    methods = [x for x in FLOOR_METHODS if x != "int8" or int8_gemm_available()]
    for method in methods:
        for chunk in chunks:
            name = f"{method}/{chunk}"
            best_cpu, best_wall = float("inf"), float("inf")
            for _ in range(repeats):
                c0, w0 = time.process_time(), time.perf_counter()
                count_pair_tables(
                    weight, bias, samples, bins=bins, method=method, chunk=chunk, seed=seed
                )
                best_cpu = min(best_cpu, time.process_time() - c0)
                best_wall = min(best_wall, time.perf_counter() - w0)
            variants[name], walls[name] = best_cpu, best_wall
    best = min(variants, key=variants.get)
    return {"variants": variants, "best": best, "cpu_s": variants[best], "wall_s": walls[best]}

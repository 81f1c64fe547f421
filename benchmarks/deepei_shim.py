"""Run PyPI ``deep-ei`` 0.7.0 (the peer) unmodified on networkx 3.

deep-ei's ``topology_of`` adds an edge from ``None`` (no previous module) to the first
layer; networkx >= 3 rejects ``None`` as a node (``ValueError: None cannot be a node``).
:func:`patched_deep_ei` swaps, *at runtime and only while the context is open*, the
``nx`` name inside the ``deep_ei`` module for a thin proxy of networkx whose ``DiGraph``
skips edges that start or end at ``None``. Nothing else of deep-ei changes: the installed
file is never copied or edited, and the original ``deep_ei.nx`` is restored on exit.

Under networkx 2 the ``None`` node existed but nothing read it (deep-ei walks *forward*
from a layer with ``neighbors`` and checks ``descendants`` of the first layer), so
dropping it changes no result.

The wrappers below call deep-ei exactly as the paper's code did, with the binning and
ranges made explicit: 8 bins, sigmoid ranges (0, 1). deep-ei draws its noise from torch's
*global* generator, so each wrapper seeds it with ``torch.manual_seed(seed)`` first.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import networkx as nx
import torch
from torch import nn


class _NoneTolerantDiGraph(nx.DiGraph):
    """``nx.DiGraph`` that ignores edges to/from ``None`` (deep-ei's "no previous module")."""

    def add_edge(self, u_of_edge, v_of_edge, **attr):  # noqa: D102 - networkx signature
        if u_of_edge is None or v_of_edge is None:
            for node in (u_of_edge, v_of_edge):
                if node is not None:
                    self.add_node(node)
            return
        super().add_edge(u_of_edge, v_of_edge, **attr)


def _nx_proxy() -> types.ModuleType:
    proxy = types.ModuleType("networkx_deep_ei_shim")
    proxy.__dict__.update({k: getattr(nx, k) for k in dir(nx) if not k.startswith("__")})
    proxy.DiGraph = _NoneTolerantDiGraph
    return proxy


@contextlib.contextmanager
def patched_deep_ei() -> Iterator[types.ModuleType]:
    """Context manager yielding the ``deep_ei`` module with the networkx-3 shim in place."""
    import deep_ei

    original = deep_ei.nx
    deep_ei.nx = _nx_proxy()
    try:
        yield deep_ei
    finally:
        deep_ei.nx = original


def deep_ei_version() -> str:
    """The installed deep-ei version (``importlib.metadata``)."""
    from importlib.metadata import version

    return version("deep-ei")


def _topology(deep_ei: types.ModuleType, net: nn.Sequential, n_in: int):
    return deep_ei.topology_of(net, input=torch.zeros((1, n_in)))


def _kwargs(bins: int) -> dict:
    # explicit ranges and bins, as the paper's measurements used for sigmoid networks
    return dict(in_range=(0, 1), in_bins=bins, out_range=(0, 1), out_bins=bins)


def paper_measurement(
    net: nn.Sequential,
    *,
    samples: int,
    sensitivity_samples: int = 5000,
    bins: int = 8,
    batch_size: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """deep-ei's per-layer measurement as in the paper: EI and EI_parts from the same
    ``samples`` (``vector_and_pairwise_ei``), sensitivity from ``sensitivity_samples``.

    ``net`` is ``nn.Sequential(nn.Linear(n, m), nn.Sigmoid())``. Returns bits.
    """
    linear = net[0]
    with patched_deep_ei() as deep_ei:
        top = _topology(deep_ei, net, linear.in_features)
        torch.manual_seed(seed)
        vec, parts = deep_ei.vector_and_pairwise_ei(
            linear, top, samples=samples, batch_size=batch_size, **_kwargs(bins)
        )
        sens = deep_ei.sensitivity(
            linear, top, samples=sensitivity_samples, batch_size=batch_size, **_kwargs(bins)
        )
    return {"ei": float(vec), "ei_parts": float(parts), "sensitivity": float(sens)}


def _sampled(
    name: str, net: nn.Sequential, *, samples: int, bins: int, batch_size: int, seed: int
) -> float:
    """Call ``deep_ei.<name>(layer, topology, samples=...)`` unmodified, seeded; bits."""
    linear = net[0]
    with patched_deep_ei() as deep_ei:
        top = _topology(deep_ei, net, linear.in_features)
        torch.manual_seed(seed)
        fn = getattr(deep_ei, name)
        return float(fn(linear, top, samples=samples, batch_size=batch_size, **_kwargs(bins)))


def ei_parts(
    net: nn.Sequential, *, samples: int, bins: int = 8, batch_size: int = 20, seed: int = 0
) -> float:
    """deep-ei's sampled EI_parts (``ei_parts(samples=...)``), bits."""
    return _sampled("ei_parts", net, samples=samples, bins=bins, batch_size=batch_size, seed=seed)


def whole_ei(
    net: nn.Sequential, *, samples: int, bins: int = 8, batch_size: int = 20, seed: int = 0
) -> float:
    """deep-ei's whole-layer ("vector") EI (``ei(samples=...)``), bits."""
    return _sampled("ei", net, samples=samples, bins=bins, batch_size=batch_size, seed=seed)

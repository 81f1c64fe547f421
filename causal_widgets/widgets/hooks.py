"""Hooking a dashboard into a training loop: :func:`attach` and the Lightning callback.

``dash, hook = cw.attach(model, x)`` makes a
:class:`~causal_widgets.widgets.dashboard.CausalDashboard` and a plain per-epoch hook;
``CausalDashboardCallback(dash)`` records from a Lightning ``Trainer``. The callback
class is built on first use (module ``__getattr__``) so Lightning is imported only by
those who ask for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from causal_widgets.widgets.dashboard import CausalDashboard


def attach(
    model: Any,
    example_input: Any,
    *,
    every: int = 1,
    display: bool = True,
    **kwargs: Any,
) -> tuple[CausalDashboard, Callable[..., None]]:
    """A dashboard on ``model`` plus a plain hook to call once per epoch.

    >>> dash, hook = cw.attach(model, x_train, every=5)   # doctest: +SKIP
    >>> for epoch in range(100):                          # doctest: +SKIP
    ...     hook(loss=loss.item())       # epoch counted for you, or hook(epoch, loss=...)

    The dashboard is displayed right away inside a notebook (``display=False`` to
    skip). ``kwargs`` go to :class:`CausalDashboard` (``bins``, ``in_range``, ...).
    """
    dash = CausalDashboard(model, example_input, every=every, **kwargs)
    counter = {"next": 0}

    def hook(epoch: int | None = None, **scalars: float) -> None:
        """Record one epoch: ``hook(loss=...)`` counts epochs 0, 1, 2, ... itself."""
        if epoch is None:
            epoch = counter["next"]
        dash.record(int(epoch), **scalars)
        counter["next"] = int(epoch) + 1

    if display:
        try:
            from IPython import get_ipython
            from IPython.display import display as ipy_display
        except ImportError:  # pragma: no cover - IPython ships with ipywidgets
            get_ipython = None
        if get_ipython is not None and get_ipython() is not None:
            ipy_display(dash)
    return dash, hook


_LOSS_KEYS = ("train_loss", "train_loss_epoch", "loss", "train/loss")
_ACC_KEYS = ("train_acc", "train_accuracy", "acc", "accuracy", "val_acc", "val_accuracy")


def _callback_base() -> type:
    """Lightning's ``Callback`` if Lightning is installed (Trainer checks the type), else object."""
    for mod in ("lightning.pytorch", "pytorch_lightning"):
        try:
            module = __import__(mod, fromlist=["Callback"])
            return module.Callback
        except ImportError:
            continue
    return object


def _make_callback_class() -> type:
    base = _callback_base()

    class CausalDashboardCallback(base):  # type: ignore[misc, valid-type]
        """Lightning callback: ``Trainer(callbacks=[CausalDashboardCallback(dash)])``.

        At the end of each training epoch it calls ``dash.record(trainer.current_epoch,
        loss=..., accuracy=...)`` with the first of ``trainer.callback_metrics``' keys
        ``train_loss``/``loss``/... and ``train_acc``/``accuracy``/... that is present
        (override with ``loss_key=`` / ``accuracy_key=``). Works without Lightning
        installed (then it is a plain object any loop can call).
        """

        def __init__(
            self,
            dash: CausalDashboard,
            *,
            loss_key: str | None = None,
            accuracy_key: str | None = None,
        ) -> None:
            super().__init__()
            if not hasattr(dash, "record"):
                raise TypeError(
                    "CausalDashboardCallback needs a CausalDashboard (or anything with "
                    f".record(epoch, **scalars)); got {type(dash).__name__}."
                )
            self.dash = dash
            self.loss_key = loss_key
            self.accuracy_key = accuracy_key

        @staticmethod
        def _pick(metrics: Mapping[str, Any], key: str | None, candidates: tuple) -> Any:
            keys = (key,) if key else candidates
            for k in keys:
                if k in metrics:
                    v = metrics[k]
                    return float(v.item() if hasattr(v, "item") else v)
            return None

        def on_train_epoch_end(self, trainer: Any, pl_module: Any = None) -> None:
            metrics = dict(getattr(trainer, "callback_metrics", {}) or {})
            scalars = {}
            loss = self._pick(metrics, self.loss_key, _LOSS_KEYS)
            acc = self._pick(metrics, self.accuracy_key, _ACC_KEYS)
            if loss is not None:
                scalars["loss"] = loss
            if acc is not None:
                scalars["accuracy"] = acc
            self.dash.record(int(trainer.current_epoch), **scalars)

        def on_train_end(self, trainer: Any, pl_module: Any = None) -> None:
            # bring the widget up to date without blocking on pending measurements
            self.dash.refresh()

    CausalDashboardCallback.__module__ = __name__
    return CausalDashboardCallback


def __getattr__(name: str) -> Any:
    # built on first use so Lightning is imported only by those who want the callback
    if name == "CausalDashboardCallback":
        cls = _make_callback_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

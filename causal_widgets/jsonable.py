"""The one JSON-safe conversion, with one NaN policy: non-finite numbers become ``null``.

Used wherever the package writes JSON or sends it to the browser: a history's
``meta.json`` (:mod:`causal_widgets.live.store`), the dashboards' synced traits
(:mod:`causal_widgets.widgets`), :meth:`LayerResult.to_dict
<causal_widgets.engine.layer_measure.LayerResult.to_dict>` and the benchmark reports.
JSON has no NaN or infinity (``json.dumps`` would write the non-standard ``NaN`` and a
browser's ``JSON.parse`` rejects it), so "not a number" is written as "no value".

>>> import numpy as np
>>> to_jsonable({"bins": np.int64(8), "range": (0, 1.5), "ci": [np.nan, np.float32(2)]})
{'bins': 8, 'range': [0, 1.5], 'ci': [None, 2.0]}
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (``json.dumps(..., allow_nan=False)`` accepts it).

    * ``None``, ``str`` and ``bool`` stay as they are (numpy bools become ``bool``);
    * ints (numpy too) become ``int``; floats (numpy too) become ``float``, and the
      non-finite ones (NaN, +-inf) become ``None``;
    * mappings become dicts with ``str`` keys; lists and tuples become lists;
    * numpy arrays and scalars, and torch tensors, become their Python values
      (``tolist()`` / ``item()``), converted the same way;
    * anything else becomes ``str(value)``.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    # torch only if the caller already has it: this module must not import it
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist())
    return str(value)


__all__ = ["to_jsonable"]

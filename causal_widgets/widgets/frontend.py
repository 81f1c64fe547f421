"""The widgets' front-end as anywidget wants it: one ES module and one style sheet each.

The front-end lives in ``js/`` as several small modules (``dashboard.js`` and ``study.js``
each import their shared helpers from ``plot_common.js``, so node's test runner can load
them as they are). anywidget loads ONE module per widget, so :func:`esm_bundle` inlines
the shared module into each widget's ``_esm``; :func:`widget_css` puts ``common.css``
(the look both widgets share) before each widget's own sheet.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

#: The folder of the front-end's files (``causal_widgets/js``).
_JS_DIR = Path(str(files("causal_widgets.js")))

# the one import form esm_bundle inlines: `import { a, b } from "./name.js";` on one line
_LOCAL_IMPORT = re.compile(r'^import \{([^}\n]*)\} from "\./([\w.-]+\.js)";[ \t]*$', re.M)
# any static import statement (what is left of these after inlining cannot be inlined)
_OTHER_IMPORT = re.compile(r"""^[ \t]*import(?:[ \t]*[{*"']|[ \t]+[\w$])""", re.M)
_EXPORT = re.compile(r"^export\b", re.M)
# a top-level declaration (the front-end modules indent everything else), with its name
_DECLARATION = re.compile(
    r"^(export )?(?:async )?(?:function\*?|const|let|var|class) +([A-Za-z_$][\w$]*)", re.M
)


def esm_bundle(path: Path) -> str:
    """The ES module at ``path`` as one self-contained module, for an anywidget ``_esm``.

    anywidget loads ONE module per widget, so a relative import does not resolve in the
    browser. Each line ``import { a, b } from "./name.js";`` is replaced by the text of
    ``name.js`` (next to ``path``) with ``export `` taken off its top-level declarations;
    node's test runner resolves the same import natively. One level deep: the inlined
    module may not import or re-export anything itself. Raises ``ValueError`` for what
    cannot be inlined that way (another import form, a missing file or name, ``export
    default`` / ``export {...}`` in the inlined module, a top-level name declared twice).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    own = {m.group(2) for m in _DECLARATION.finditer(text)}
    inlined: set[str] = set()

    def inline(match: re.Match) -> str:
        names = [n.strip() for n in match.group(1).split(",") if n.strip()]
        dep = path.parent / match.group(2)
        where = f"{path.name}: {match.group(0).strip()!r}"
        if dep.name in inlined:
            raise ValueError(f"{where}: {dep.name} is imported twice; import it on one line")
        inlined.add(dep.name)
        if not dep.is_file():
            raise ValueError(f"{where}: no file {dep}")
        src = dep.read_text(encoding="utf-8")
        if _OTHER_IMPORT.search(src):
            raise ValueError(f"{where}: {dep.name} imports something itself; only one level "
                             "of imports can be inlined")
        declared = {m.group(2): bool(m.group(1)) for m in _DECLARATION.finditer(src)}
        body = _DECLARATION.sub(lambda m: m.group(0)[len(m.group(1) or ""):], src)
        left = _EXPORT.search(body)
        if left:
            line = body[left.start():].splitlines()[0]
            raise ValueError(f"{where}: cannot inline {dep.name}'s {line!r} (only "
                             "`export` of function/const/let/class declarations)")
        for name in names:
            if not re.fullmatch(r"[A-Za-z_$][\w$]*", name):
                raise ValueError(f"{where}: cannot inline {name!r} (no renaming: import the "
                                 "names as they are declared)")
            if not declared.get(name):
                raise ValueError(f"{where}: {dep.name} exports no {name!r}")
        clash = sorted(own & set(declared))
        if clash:
            raise ValueError(f"{where}: {path.name} declares {clash} again, which {dep.name} "
                             "declares too (one scope once inlined)")
        return (f"// ---- {dep.name}, inlined by causal_widgets.widgets.frontend.esm_bundle\n"
                f"{body.rstrip()}\n// ---- end of {dep.name}")

    out = _LOCAL_IMPORT.sub(inline, text)
    left = _OTHER_IMPORT.search(out)
    if left:
        line = out[left.start():].splitlines()[0].strip()
        raise ValueError(f"{path.name}: cannot inline {line!r} (only single-line "
                         '`import { a, b } from "./name.js";`)')
    return out


def widget_css(name: str) -> str:
    """A widget's ``_css``: ``js/common.css`` (the look both widgets share), then ``name``."""
    return "\n".join((_JS_DIR / f).read_text(encoding="utf-8") for f in ("common.css", name))


__all__ = ["esm_bundle", "widget_css"]

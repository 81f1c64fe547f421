"""Optional dependencies: the one message for a missing extra.

The core (engine, network, live, widgets) needs only the dependencies pyproject.toml
declares; the paper's figures and data sets need the ``paper`` extra (matplotlib,
scikit-learn) and headless notebooks the ``notebook`` extra (nbclient, nbformat). Code that
needs an extra imports it where it is used and raises :func:`missing_extra`'s error when it
is absent, so the user reads which package to install instead of a bare
``ModuleNotFoundError``.
"""

from __future__ import annotations


def missing_extra(what: str, extra: str, err: ImportError) -> ImportError:
    """The error to raise (``from err``) when ``what`` lacks a package of the extra ``extra``.

    >>> str(missing_extra("the figures", "paper", ModuleNotFoundError(name="matplotlib")))
    "the figures need matplotlib, in the 'paper' extra: pip install causal_widgets[paper] (in a source checkout: pip install -e '.[paper]')"
    """  # noqa: E501 - a doctest's expected output is one line
    package = err.name or str(err)
    return ImportError(
        f"{what} need {package}, in the {extra!r} extra: pip install causal_widgets[{extra}] "
        f"(in a source checkout: pip install -e '.[{extra}]')"
    )

"""Shipped potentials, loaded by name: ``gapcalc.load("Si")``.

The models and their model cards live in the repository's top-level ``potentials/``
folder, installed as the package ``gapcalc.shipped``.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def _folder():
    """The installed ``gapcalc.shipped`` package, else the checkout's ``potentials/``.

    (Running from a clone puts its ``gapcalc/`` first on sys.path, where the mapped
    subpackage does not exist, so fall back to the folder beside it.)"""
    try:
        return resources.files("gapcalc.shipped")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "potentials"


def available() -> list[str]:
    return sorted(p.name[:-4] for p in _folder().iterdir() if p.name.endswith(".npz"))


def resolve(name_or_path) -> Path:
    """Path of a model file: an existing path, or the name of a shipped potential."""
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = _folder() / f"{name_or_path}.npz"
    if shipped.is_file():
        return Path(str(shipped))
    raise FileNotFoundError(f"{name_or_path}: no such model file, and not a shipped potential "
                            f"(available: {available()})")

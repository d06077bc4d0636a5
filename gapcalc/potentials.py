"""Shipped potentials, loaded by name: ``gapcalc.load("Si")``."""
from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data" / "potentials"


def available() -> list[str]:
    return sorted(p.stem for p in DATA.glob("*.npz"))


def resolve(name_or_path) -> Path:
    """Path of a model file: an existing path, or the name of a shipped potential."""
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = DATA / f"{name_or_path}.npz"
    if shipped.exists():
        return shipped
    raise FileNotFoundError(f"{name_or_path}: no such model file, and not a shipped potential "
                            f"(available: {available()})")

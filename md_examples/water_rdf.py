"""O-O, O-H and H-H radial distribution functions of an MD trajectory, against the DFT frames.

Shows: post-processing a trajectory written by ``water_nvt.py`` (or any file ASE reads)
and checking the liquid structure of the ``water`` potential against the DFT-AIMD frames
it was trained on: first-peak position and height, first minimum, coordination numbers
and the RMS difference of g(r) between model MD and DFT.

Run from the repository root:

    python3 md_examples/water_nvt.py --steps 4000 --out water_nvt.traj
    python3 md_examples/water_rdf.py water_nvt.traj --skip 40 --plot rdf.png

``--skip`` drops the first trajectory frames (equilibration). ``--plot`` needs
matplotlib (optional); without it the curves are written as text (``--table``).
g(r) is computed with numpy over all minimum-image pairs up to ``--rmax`` (default 6 Å,
below half the 12.44 Å box) and normalised by the ideal-gas pair density.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data" / "water_dpmd" / "water_dpmd.xyz"
PAIRS = (("O", "O"), ("O", "H"), ("H", "H"))


def rdf(frames, a, b, rmax=6.0, nbins=120):
    """g_ab(r) averaged over ``frames`` (periodic, minimum image). Returns (r, g, n_ab(r)).

    n_ab(r) is the running coordination number: mean number of b atoms within r of an a atom.
    """
    from ase.geometry import get_distances
    edges = np.linspace(0.0, rmax, nbins + 1)
    hist = np.zeros(nbins)
    norm = 0.0
    for at in frames:
        sym = np.array(at.get_chemical_symbols())
        ia, ib = np.flatnonzero(sym == a), np.flatnonzero(sym == b)
        if not len(ia) or not len(ib):
            continue
        faces = [np.linalg.norm(np.cross(at.cell[(k + 1) % 3], at.cell[(k + 2) % 3]))
                 for k in range(3)]
        half = 0.5 * at.get_volume() / max(faces)          # half the smallest cell height
        if rmax > half + 1e-9:
            raise ValueError(f"rmax {rmax} Å exceeds half the smallest cell height {half:.3f} Å")
        _, d = get_distances(at.positions[ia], at.positions[ib], cell=at.cell, pbc=at.pbc)
        if a == b:
            d = d[np.triu_indices(len(ia), 1)]
            counts = 2 * np.histogram(d, edges)[0]          # both a-b and b-a
        else:
            counts = np.histogram(d.ravel(), edges)[0]
        hist += counts
        norm += len(ia) * len(ib) / at.get_volume()          # N_a · ρ_b
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = hist / (norm * shell)
    r = 0.5 * (edges[1:] + edges[:-1])
    # running coordination: cumulative pair count per a atom and frame
    n_a = sum(np.sum(np.array(f.get_chemical_symbols()) == a) for f in frames)
    coord = np.cumsum(hist) / max(n_a, 1)
    return r, g, coord


def features(r, g, coord):
    """First peak (position, height), first minimum after it, coordination to that minimum."""
    start = np.argmax(g > 0.1)
    k1 = start + int(np.argmax(g[start:]))
    # first minimum after the peak (smoothed a little)
    gs = np.convolve(g, np.ones(3) / 3, mode="same")
    k2 = k1 + int(np.argmin(gs[k1:k1 + int(len(r) / 3)]))
    return {"peak_r": float(r[k1]), "peak_g": float(g[k1]), "min_r": float(r[k2]),
            "coordination": float(coord[k2])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("trajectory", nargs="?", default="water_nvt.traj")
    p.add_argument("--skip", type=int, default=0, help="trajectory frames dropped at the start")
    p.add_argument("--every", type=int, default=1, help="use every n-th frame")
    p.add_argument("--rmax", type=float, default=6.0, help="Å")
    p.add_argument("--nbins", type=int, default=120)
    p.add_argument("--data", default=str(DATA), help="DFT frames to compare with ('' = none)")
    p.add_argument("--plot", default=None, help="PNG file (needs matplotlib)")
    p.add_argument("--table", default=None, help="write r and all g(r) columns to this text file")
    a = p.parse_args(argv)
    import ase.io

    md = ase.io.read(a.trajectory, f"{a.skip}::{a.every}")
    if not md:
        raise SystemExit(f"{a.trajectory}: no frames left after --skip {a.skip}")
    sets = {"MD": md}
    if a.data and Path(a.data).exists():
        sets["DFT"] = ase.io.read(a.data, ":")
    elif a.data:
        print(f"({a.data} not found: no DFT comparison)")
    print(f"MD: {len(md)} frames from {a.trajectory}" +
          (f"; DFT: {len(sets['DFT'])} frames from {a.data}" if "DFT" in sets else ""))

    curves = {}
    for name, frames in sets.items():
        for x, y in PAIRS:
            curves[(name, x, y)] = rdf(frames, x, y, a.rmax, a.nbins)

    print(f"\n{'pair':<6}{'set':<5}{'peak r (Å)':>11}{'peak g':>8}{'min r (Å)':>10}"
          f"{'coord.':>8}")
    result = {}
    for x, y in PAIRS:
        for name in sets:
            r, g, c = curves[(name, x, y)]
            f = features(r, g, c)
            if (x, y) == ("O", "H"):        # hydrogen-bond peak O···H between 1.5 and 2.3 Å
                sel = (r > 1.5) & (r < 2.3)
                k = int(np.argmax(np.where(sel, g, -1.0)))
                f["hbond_r"], f["hbond_g"] = float(r[k]), float(g[k])
            result[(name, x + y)] = f
            print(f"{x + '-' + y:<6}{name:<5}{f['peak_r']:>11.3f}{f['peak_g']:>8.2f}"
                  f"{f['min_r']:>10.3f}{f['coordination']:>8.2f}"
                  + (f"   H-bond peak {f['hbond_r']:.3f} Å, g {f['hbond_g']:.2f}"
                     if "hbond_r" in f else ""))
        if "DFT" in sets:
            g_md, g_dft = curves[("MD", x, y)][1], curves[("DFT", x, y)][1]
            rms = float(np.sqrt(np.mean((g_md - g_dft) ** 2)))
            result[("rms", x + y)] = rms
            print(f"{'':<6}RMS difference of g(r) MD vs DFT over 0-{a.rmax:g} Å: {rms:.3f}")
    print("(O-H: the first peak is the covalent bond at ~1 Å, 'coord.' counts the 2 covalent H; "
          "the hydrogen bond is the second peak.)")

    if a.table:
        r = curves[("MD", "O", "O")][0]
        cols = [r] + [curves[k][1] for k in curves]
        header = "r " + " ".join(f"g_{x}{y}_{name}" for (name, x, y) in curves)
        np.savetxt(a.table, np.column_stack(cols), header=header, fmt="%.5f")
        print(f"wrote {a.table}")
    if a.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot (use --table for the numbers)")
        else:
            fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
            for ax, (x, y) in zip(axes, PAIRS):
                for name, style in (("DFT", "k-"), ("MD", "r--")):
                    if (name, x, y) in curves:
                        r, g, _ = curves[(name, x, y)]
                        ax.plot(r, g, style, label=name)
                ax.set_title(f"g_{x}{y}(r)")
                ax.set_xlabel("r (Å)")
                ax.legend()
            fig.tight_layout()
            fig.savefig(a.plot, dpi=120)
            print(f"wrote {a.plot}")
    return {"curves": curves, "features": result}


if __name__ == "__main__":
    main()
    sys.exit(0)

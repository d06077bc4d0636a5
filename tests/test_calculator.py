"""GAPCalculator: finite differences, sums, MD energy conservation, ASE integration."""
import numpy as np
import pytest
from ase import units
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.filters import FrechetCellFilter
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from gapcalc import SOAP, GAPCalculator, SparseGPR

from conftest import SOAP_SMALL


def fd_forces(atoms, h=4e-4):
    """ase.calculators.fd central differences, Richardson-extrapolated to O(h⁴).

    A fitted GAP sums many weights of both signs, so its energy carries ~1e-10 eV of
    round-off; plain O(h²) differences cannot then reach 1e-6 relative at any h."""
    return (4 * calculate_numerical_forces(atoms, h / 2) - calculate_numerical_forces(atoms, h)) / 3


def fd_stress(atoms, h=3e-5):
    # the cosine cutoff is C1 only, so strains of 1e-3 (moving many pairs through the
    # switching region at once) spoil extrapolation; a small plain difference is best
    return calculate_numerical_stress(atoms, h)


@pytest.mark.parametrize("two_body", [None, "distance", "radial"])
def test_forces_and_stress_finite_difference(cu_frames, two_body):
    # a compact model: weights of ~1e2 rather than ~1e4 keep the energy's round-off
    # (~Σ|α| ε_machine) well below what a 1e-6 relative finite-difference check resolves
    model = SparseGPR(SOAP(["Cu"], **SOAP_SMALL), n_sparse=40, sigma_energy=0.002,
                      sigma_force=0.05, sigma_virial=0.05, two_body=two_body,
                      n_sparse_2b=15).fit(cu_frames[:10])
    at = cu_frames[33].copy()
    at.calc = GAPCalculator(model)
    F = at.get_forces()
    Fn = fd_forces(at)
    assert np.abs(F - Fn).max() < 1e-6 * np.abs(F).max() + 1e-9
    S = at.get_stress()
    Sn = fd_stress(at)
    assert np.abs(S - Sn).max() < 1e-6 * np.abs(S).max() + 1e-9
    assert abs(at.get_potential_energies().sum() - at.get_potential_energy()) < 1e-9
    assert at.get_potential_energy(force_consistent=True) == at.get_potential_energy()


def test_molecule_forces_sum_to_zero(cu_model):
    from ase.cluster import Icosahedron
    cluster = Icosahedron("Cu", 2)
    cluster.rattle(0.05, seed=2)
    cluster.calc = GAPCalculator(cu_model)
    F = cluster.get_forces()
    np.testing.assert_allclose(F.sum(axis=0), 0.0, atol=1e-10)
    Fn = fd_forces(cluster)
    assert np.abs(F - Fn).max() < 1e-6 * np.abs(F).max()


def test_implemented_properties_not_shared(cu_model):
    a, b = GAPCalculator(cu_model), GAPCalculator(cu_model)
    a.implemented_properties.append("x")
    assert "x" not in b.implemented_properties


def test_results_cached(cu_model, cu_frames):
    at = cu_frames[31].copy()
    calc = GAPCalculator(cu_model)
    at.calc = calc
    e = at.get_potential_energy()
    calc.results["energy"] = 123.0  # cached: no recomputation without a change
    assert at.get_potential_energy() == 123.0
    at.positions[0, 0] += 0.01
    assert at.get_potential_energy() != 123.0 and abs(at.get_potential_energy() - e) < 1


def test_skin_reuse_matches_fresh_list(cu_model, cu_frames):
    at = cu_frames[32].copy()
    skinned = GAPCalculator(cu_model, skin=1.0)
    fresh = GAPCalculator(cu_model, skin=0.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        at.positions += rng.normal(scale=0.05, size=at.positions.shape)
        skinned.calculate(at, ["energy", "forces"])
        fresh.calculate(at, ["energy", "forces"])
        np.testing.assert_allclose(skinned.results["forces"], fresh.results["forces"],
                                   atol=1e-11)


def test_nve_energy_conservation(cu_model, cu_frames):
    at = cu_frames[34].copy()
    at.calc = GAPCalculator(cu_model)
    MaxwellBoltzmannDistribution(at, temperature_K=600, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(at, 1.0 * units.fs)
    etot = []
    dyn.attach(lambda: etot.append(at.get_total_energy()), interval=5)
    dyn.run(400)
    etot = np.array(etot) / len(at)
    t_ps = 0.4
    drift = abs(np.polyfit(np.linspace(0, t_ps, len(etot)), etot, 1)[0])
    assert drift < 1e-3, drift          # eV/atom/ps
    assert np.ptp(etot) < 2e-3          # eV/atom fluctuation at 1 fs


def test_cell_relaxation(cu_model, cu_frames):
    at = cu_frames[36].copy()
    at.calc = GAPCalculator(cu_model)
    opt = BFGS(FrechetCellFilter(at), logfile=None)
    assert opt.run(fmax=0.02, steps=300)
    assert np.abs(at.get_forces()).max() < 0.02

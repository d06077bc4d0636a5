"""The representation options of issue 15 (radial scaling, alchemical compression, feature
selection) combined with QUIP's radial bases and vector layout (the per-neighbour cutoff
function of the QUIP tables, species_Z channels, the covariance_sigma0 element): exact
gradients by finite differences, reverse mode against forward mode, records."""
import numpy as np
import pytest
from ase import Atoms

from gapcalc.descriptors import SOAP, descriptor_from_dict
from gapcalc.descriptors.radial import radial_scaling_values

from _checks import assert_backward_matches_forward, assert_gradients_match_fd, triclinic_cell

SMALL = dict(cutoff=4.0, n_max=3, l_max=2, atom_sigma=0.5, cutoff_width=1.0)
SCALING = {"type": "inverse_power", "r0": 2.0, "m": 4, "c": 0.7}
MIX = [[1.0, 0.4, -0.3], [0.2, -0.8, 0.9]]          # d_J = 2 over (H, C, O)
SP = ["H", "C", "O"]


def cell3():
    """Periodic triclinic cell with three species, smaller than the cutoff sphere."""
    return triclinic_cell([1, 8, 8, 6, 1, 6])


def variants():
    comp = SOAP(SP, radial_basis="quip", compression=MIX, covariance_sigma0=0.5, **SMALL)
    D = comp.n_features
    # a subset that keeps the covariance_sigma0 element (the last one) and one that drops it
    keep = np.r_[np.random.default_rng(2).choice(D - 1, (D - 1) // 2, replace=False), D - 1]
    drop = np.random.default_rng(3).choice(D - 1, (D - 1) // 2, replace=False)
    return {
        "quip_scaling": SOAP(SP, radial_basis="quip", radial_scaling=SCALING, **SMALL),
        "quip_gto_compressed": SOAP(SP, radial_basis="quip_gto", compression=MIX,
                                    radial_scaling=SCALING, **SMALL),
        "quip_all_keep": SOAP(SP, radial_basis="quip", radial_scaling=SCALING,
                              compression=MIX, covariance_sigma0=0.5, features=keep, **SMALL),
        "quip_all_drop": SOAP(SP, radial_basis="quip", radial_scaling=SCALING,
                              compression=MIX, covariance_sigma0=0.5, features=drop, **SMALL),
        "quip_species_Z_selected": SOAP(SP, radial_basis="quip", species_Z=[8, 1],
                                        central_reference_all_species=True,
                                        features=np.arange(0, 40, 3), **SMALL),
    }


NAMES = list(variants())


@pytest.mark.parametrize("name", NAMES)
def test_position_and_strain_gradients(name):
    desc = variants()[name]
    assert_gradients_match_fd(desc, cell3(), h=1e-5, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_reverse_mode_matches_forward(name):
    desc = variants()[name]
    at = cell3()
    env = desc.environment(at)
    c, p, pn = desc.describe(env)
    np.testing.assert_allclose(p, desc.features(env), atol=1e-14)
    np.testing.assert_allclose(p, desc.spectrum(desc.expand(env))[0], atol=1e-14)
    assert_backward_matches_forward(desc, env, c, p, pn, len(at))


def test_selection_is_a_column_subset_and_keeps_or_drops_the_constant():
    at = cell3()
    v = variants()
    # (unnormalised: a subset is normalised over its own components)
    full = SOAP(SP, radial_basis="quip", radial_scaling=SCALING, compression=MIX,
                covariance_sigma0=0.5, normalize=False, **SMALL)
    X = full.compute(at)
    assert np.all(X[:, -1] == 0.5)
    for name in ("quip_all_keep", "quip_all_drop"):
        d = v[name].with_options(normalize=False)
        np.testing.assert_allclose(d.compute(at), X[:, d.selected], rtol=1e-12, atol=1e-14)
        assert d._has_constant == (name == "quip_all_keep")
        assert d.n_features_full == full.n_features
        assert (X[:, d.selected][:, -1] == 0.5).all() == (name == "quip_all_keep")
    sub = v["quip_species_Z_selected"].with_options(normalize=False)
    ref = SOAP(SP, radial_basis="quip", species_Z=[8, 1], central_reference_all_species=True,
               normalize=False, **SMALL)
    np.testing.assert_allclose(sub.compute(at), ref.compute(at)[:, sub.selected], rtol=1e-12,
                               atol=1e-14)


def test_identity_compression_is_the_quip_layout():
    """compression = I in the "quip" layout gives QUIP's vector (channels in species order)."""
    at = cell3()
    ref = SOAP(SP, radial_basis="quip", covariance_sigma0=1.0, **SMALL)
    eye = SOAP(SP, radial_basis="quip", covariance_sigma0=1.0, compression=np.eye(3), **SMALL)
    np.testing.assert_allclose(eye.compute(at), ref.compute(at), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="species_Z"):
        SOAP(SP, radial_basis="quip", species_Z=[8, 1], compression=MIX, **SMALL)


def test_radial_scaling_with_per_neighbour_cutoff():
    """Dimer in the cosine-switch region: with the QUIP basis (cutoff function applied per
    neighbour, not in the table) the scaled neighbour density is u(d) times the plain one."""
    at = Atoms("HH", positions=[[0, 0, 0], [0.6, 1.3, 2.8]])      # d ≈ 3.15 Å > r_c − width
    d = np.linalg.norm(at.positions[1])
    for basis in ("quip", "quip_gto"):
        plain = SOAP(["H"], radial_basis=basis, normalize=False,
                     central_reference_all_species=False, **SMALL)
        scaled = SOAP(["H"], radial_basis=basis, normalize=False, radial_scaling=SCALING,
                      central_reference_all_species=False, **SMALL)
        assert plain._fc[0] > 0
        c0 = plain.expand(plain.environment(at))
        c1 = scaled.expand(scaled.environment(at))
        centre = np.zeros_like(c0)
        centre[:, 0, :, 0] = plain._table[3] * 0.5 / np.sqrt(np.pi)
        u, _ = radial_scaling_values(d, scaled.radial_scaling)
        assert np.abs(c0 - centre).max() > 1e-6
        np.testing.assert_allclose(c1 - centre, u * (c0 - centre), atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_records_round_trip(name):
    desc = variants()[name]
    again = descriptor_from_dict(desc.to_dict())
    assert again.to_dict() == desc.to_dict()
    at = cell3()
    np.testing.assert_array_equal(again.compute(at), desc.compute(at))
    assert desc.with_options().to_dict() == desc.to_dict()

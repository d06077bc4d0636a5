"""Atomic-environment descriptors: SOAP power spectrum, 2-body radial spectrum, pair distances."""
from .soap import SOAP, DescriptorGradients
from .twobody import TwoBody
from .pair import PairDistance
from .species import SpeciesMap
from .compression import learn_compression


def descriptor_from_dict(d: dict):
    """Rebuild a descriptor from its ``to_dict()`` record."""
    kinds = {SOAP.name: SOAP, TwoBody.name: TwoBody, PairDistance.name: PairDistance}
    name = d.get("name")
    if name not in kinds:
        raise ValueError(f"unknown descriptor {name!r}; known: {sorted(kinds)}")
    return kinds[name].from_dict(d)


__all__ = ["SOAP", "TwoBody", "PairDistance", "DescriptorGradients", "SpeciesMap", "descriptor_from_dict",
           "learn_compression"]

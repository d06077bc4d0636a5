"""Shipped gapcalc potentials (installed as ``gapcalc.shipped``): ``gapcalc.load("<name>")``."""

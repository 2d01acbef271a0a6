"""The physics of a tomography experiment: geometries, projectors, noise, and a scanner simulation without the inverse crime."""

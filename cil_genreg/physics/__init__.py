"""The physics of a tomography experiment: geometries, projectors (ASTRA or TIGRE, CPU or GPU),
Gaussian noise on the data and the initial reconstruction (:mod:`.forward`); a CT scanner
simulated without the inverse crime, Beer–Lambert photon counts from a native-resolution truth
on a finer detector (:mod:`.scanner`); and the two as the data of an experiment
(:mod:`.measurement`); the
weights of the Poisson-weighted data term from the counts (:mod:`.weights`).

Nothing is imported here: the modules need CIL, imported when they are.
"""

"""The physics of a tomography experiment: geometries, projectors (ASTRA or TIGRE, CPU or GPU),
noise and the initial reconstruction (:mod:`.forward`).

Nothing is imported here: the modules need CIL, imported when they are.
"""

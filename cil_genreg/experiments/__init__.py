"""The experiment layer: one call per reconstruction method (:mod:`.methods`), the comparison
harness over λ grids (:mod:`.comparison`), λ by the discrepancy principle
(:mod:`.parameter_choice`), tables, CSV / JSON and figures (:mod:`.reports`), the paper's
desired properties of a generator (:mod:`.evaluation`, torch only) and slab-parallel volumes
under ``torchrun`` (:mod:`.slabs`).

Nothing is imported here, so that :mod:`.evaluation` works without CIL.
"""

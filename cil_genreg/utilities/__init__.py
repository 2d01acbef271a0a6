"""The plumbing every room shares: checks of user input (:mod:`.validation`), outputs that never
destroy a user's files (:mod:`.output_safety`), image quality (:mod:`.metrics`), the
DataContainer ⇄ torch bridge (:mod:`.bridge`, needs CIL), CIL callbacks (:mod:`.callbacks`,
needs CIL), ``torchrun`` collectives (:mod:`.distributed`), the names and weights the command
line needs before CIL is imported (:mod:`.defaults`), the one CIL import (:mod:`._cil`), and the
old module paths kept working for one release (:mod:`.moved`).

Nothing is imported here: the torch-only rooms use these modules without CIL.
"""

"""CIL callbacks that report what the latent solver does inside an outer algorithm."""
import time

import numpy as np
from cil.optimisation.utilities.callbacks import Callback

from .metrics import psnr


def _regulariser_of(function):
    while hasattr(function, "function") and not hasattr(function, "solver"):
        function = function.function  # ScaledFunction and friends
    if not hasattr(function, "solver"):
        raise TypeError(f"{type(function).__name__} is not a generative regulariser (or a "
                        "multiple of one).")
    return function


class LatentSolverCallback(Callback):
    r"""Record, after every outer iteration, the latent solver's work since the last one and,
    when the ground truth is known, the PSNR :math:`10\log_{10}(r^2/\text{MSE})` of the iterate.

    Parameters
    ----------
    regulariser : GenerativeRegulariser or a multiple of one (``lam * R``)
    truth : DataContainer or numpy.ndarray, optional
        ground truth for the PSNR.
    data_range : float, optional
        :math:`r`; default the range of ``truth``.
    verbose : int
        print each record when nonzero.

    Attributes
    ----------
    history : list of dict
        per outer iteration: ``iteration``, ``inner_iterations``, ``generator_calls``,
        ``latent_seconds``, ``seconds`` (wall time since the callback was made) and ``psnr``.
    """

    def __init__(self, regulariser, truth=None, data_range=None, verbose=0):
        super().__init__(verbose=verbose)
        self.regulariser = _regulariser_of(regulariser)
        self.truth = None
        if truth is not None:
            self.truth = np.asarray(truth.as_array() if hasattr(truth, "as_array") else truth,
                                    dtype=np.float64)
            self.data_range = float(data_range if data_range is not None
                                    else self.truth.max() - self.truth.min()) or 1.0
        self.history = []
        self._start = time.perf_counter()
        self._last = self.regulariser.stats.as_dict()

    def __call__(self, algorithm):
        """Append this iteration's record to :attr:`history` (CIL calls it after each one).

        Parameters
        ----------
        algorithm : cil Algorithm
            the running outer algorithm.
        """
        now = self.regulariser.stats.as_dict()
        record = {"iteration": algorithm.iteration,
                  "inner_iterations": now["iterations"] - self._last["iterations"],
                  "generator_calls": now["generator_calls"] - self._last["generator_calls"],
                  "latent_seconds": now["seconds"] - self._last["seconds"],
                  "seconds": time.perf_counter() - self._start}
        if self.truth is not None:
            record["psnr"] = psnr(algorithm.solution, self.truth, self.data_range)
        self._last = now
        self.history.append(record)
        if self.verbose:
            print(record)

import numpy as np
import pytest
from cil.framework import AcquisitionGeometry, ImageGeometry
from cil.optimisation.algorithms import FISTA
from cil.optimisation.functions import LeastSquares
from cil.plugins.astra import ProjectionOperator

from cil_genreg import SoftGenerativeRegulariser
from cil_genreg.utilities.callbacks import LatentSolverCallback
from generators import ConvGenerator


def test_callback_records_inner_work_and_psnr_per_outer_iteration():
    G = ConvGenerator()
    ig = ImageGeometry(16, 16)
    ag = AcquisitionGeometry.create_Parallel2D().set_angles([0, 45, 90, 135]).set_panel(23)
    A = ProjectionOperator(ig, ag, device="cpu")
    truth = ig.allocate(0.5)
    y = A.direct(truth)
    R = SoftGenerativeRegulariser(G, mu=1e-3, max_iteration=10)
    cb = LatentSolverCallback(0.5 * R, truth=truth, data_range=1.0)
    FISTA(initial=ig.allocate(0), f=LeastSquares(A, y), g=0.5 * R,
          update_objective_interval=100).run(5, callbacks=[cb], verbose=0)
    # CIL calls back once before the first iteration, then after each
    assert [h["iteration"] for h in cb.history] == [0, 1, 2, 3, 4, 5]
    assert sum(h["inner_iterations"] for h in cb.history) == R.stats.iterations
    assert all(h["generator_calls"] >= 1 for h in cb.history[1:])
    assert cb.history[-1]["psnr"] > 10 * np.log10(1 / 0.25)  # better than the zero start
    with pytest.raises(TypeError, match="generative regulariser"):
        LatentSolverCallback(LeastSquares(A, y))

"""What the latent solver reports: its work counters and the solution of one solve."""
from dataclasses import dataclass, asdict

import torch


@dataclass
class SolverStats:
    """Counters of a :class:`LatentSolver`, cumulative until :meth:`reset`.

    Parameters
    ----------
    solves : int
        latent problems solved (calls of :meth:`LatentSolver.solve`).
    iterations : int
        inner optimiser iterations, summed over solves.
    generator_calls : int
        batched forward passes through the generator.
    generator_images : int
        images generated (each call counts its batch size).
    seconds : float
        wall-clock seconds spent inside :meth:`LatentSolver.solve`.
    encoder_starts : int
        targets whose candidate start (an encoder's code, ``candidates=``) beat the warm start.
    """
    solves: int = 0
    iterations: int = 0
    generator_calls: int = 0
    generator_images: int = 0
    seconds: float = 0.0
    encoder_starts: int = 0

    def reset(self):
        """Set every counter to zero."""
        self.solves = self.iterations = self.generator_calls = self.generator_images = 0
        self.seconds = 0.0
        self.encoder_starts = 0

    def as_dict(self):
        """The counters as a dict (field name to value)."""
        return asdict(self)


@dataclass
class LatentSolution:
    r"""What :meth:`LatentSolver.solve` found for a batch of targets :math:`v_b`: the best
    latent per target and its objective :math:`\varphi(v_b - G(z_b)) + c\|z_b\|^2`.

    Parameters
    ----------
    z : torch.Tensor
        (B, d) latents.
    image : torch.Tensor
        :math:`G(z)`, (B, 1, H, W).
    objective : torch.Tensor
        (B,) objective values at ``z``.
    iterations : int
        inner iterations the solve took.
    """
    z: torch.Tensor
    image: torch.Tensor
    objective: torch.Tensor
    iterations: int

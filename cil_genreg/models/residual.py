"""The residual block the decoders stack at each scale when ``res_blocks > 0``."""
from torch import nn


class ResidualBlock(nn.Module):
    r"""``x + conv3x3(SiLU(conv3x3(SiLU(x))))``, channels and size unchanged.

    .. math:: R(h) = h + W_2 * \mathrm{SiLU}(W_1 * \mathrm{SiLU}(h))

    The second convolution starts at zero, so a new block is the identity and adding blocks
    never makes an untrained decoder worse. Smooth (SiLU), no normalisation: the output for
    one latent never depends on the rest of the batch.

    Parameters
    ----------
    channels : int
    """

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, h):
        return h + self.body(h)

"""Small generators with known behaviour, shared by the core tests (torch only)."""
import torch


class LinearGenerator(torch.nn.Module):
    """G(z) = W z + b reshaped to (B, 1, H, W): every regulariser has a closed form."""

    def __init__(self, latent_dim=4, image_shape=(8, 8), seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        n = image_shape[0] * image_shape[1]
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.weight = torch.nn.Parameter(torch.randn(n, latent_dim, generator=g) / n ** 0.5 * 4)
        self.bias = torch.nn.Parameter(0.1 * torch.randn(n, generator=g))

    def forward(self, z):
        return (z @ self.weight.T + self.bias).reshape(-1, 1, *self.image_shape)


class ConvGenerator(torch.nn.Module):
    """A small random convolutional decoder (B, d) -> (B, 1, 16, 16), values in (0, 1)."""

    def __init__(self, latent_dim=6, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.latent_dim = latent_dim
        self.image_shape = (16, 16)
        self.fc = torch.nn.Linear(latent_dim, 16 * 4 * 4)
        self.up = torch.nn.Sequential(
            torch.nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1), torch.nn.Softplus(),
            torch.nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1))

    def forward(self, z):
        h = torch.nn.functional.softplus(self.fc(z)).reshape(-1, 16, 4, 4)
        return torch.sigmoid(2.0 * self.up(h))

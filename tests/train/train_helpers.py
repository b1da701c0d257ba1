"""Helpers shared by the training and diagnosis tests (a module of its own so that test files can import it)."""

import torch


def make_mlp(seed: int = 0, hidden: int = 64) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def make_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, seed: int = 0):
    data = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed))

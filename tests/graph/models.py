"""Models that are not nn.Sequential, shared by the graph, certificate and ISM tests."""

import torch
import torch.nn.functional as F
from torch import nn


class HandCNN(nn.Module):
    """A hand-written 3-layer CNN with its own forward and global mean pooling."""

    def __init__(self, channels=8, n_out=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv1d(4, channels, 7, padding=3)
        self.c2 = nn.Conv1d(channels, channels, 5, padding=2)
        self.c3 = nn.Conv1d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels, n_out)

    def forward(self, x):
        h = F.relu(self.c1(x))
        h = F.relu(self.c2(h))
        h = F.relu(self.c3(h))
        return self.head(h.mean(dim=-1))


class DilatedTower(nn.Module):
    """A Basenji-style tower: stem, max pool, dilated residual blocks (BN, GELU), cropping, a 1x1 head."""

    def __init__(self, channels=8, blocks=3, crop=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv1d(4, channels, 5, padding=2)
        self.pool = nn.MaxPool1d(2)
        self.blocks = nn.ModuleList()
        for i in range(blocks):
            d = 2 ** (i + 1)
            self.blocks.append(nn.Sequential(nn.BatchNorm1d(channels), nn.GELU(),
                                             nn.Conv1d(channels, channels, 3, dilation=d, padding=d)))
        self.crop = crop
        self.final = nn.Conv1d(channels, 2, 1)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        h = self.pool(F.relu(self.stem(x)))
        for block in self.blocks:
            h = h + block(h)
        h = h[:, :, self.crop:h.shape[-1] - self.crop]
        return F.softplus(self.final(h))  # (N, 2, L') tracks


class DictHeads(nn.Module):
    """Two heads in a dict: a profile and a count (log of summed exp), as count heads do."""

    def __init__(self, channels=6, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Conv1d(4, channels, 9, padding=4)
        self.profile = nn.Conv1d(channels, 1, 5, padding=2)
        self.count = nn.Linear(channels, 1)

    def forward(self, x):
        h = F.silu(self.body(x))
        return {"profile": self.profile(h).squeeze(1), "count": self.count(h.sum(-1))}


def one_hot(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (n, length), generator=g)
    return F.one_hot(idx, 4).transpose(1, 2).float()


class StridedPad(nn.Module):
    """Strided convolution and pooling, explicit padding, exp and sigmoid (f(0) != 0) before zero-padded
    convolutions, a position-wise linear layer on the transposed tensor, and a global max pool."""

    def __init__(self, channels=6, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv1d(4, channels, 4, stride=2, padding=1)
        self.pool = nn.AvgPool1d(3, stride=2, padding=1)
        self.c2 = nn.Conv1d(channels, channels, 3, padding=2, dilation=2, groups=2)
        self.mix = nn.Linear(channels, channels)
        self.c3 = nn.Conv1d(channels, channels, 5)
        self.head = nn.Linear(channels, 3)

    def forward(self, x):
        h = torch.exp(0.3 * self.c1(x))
        h = self.pool(h)
        h = torch.sigmoid(self.c2(F.pad(h, (2, 1), value=0.5)))
        h = self.mix(h.transpose(1, 2)).transpose(1, 2)
        h = F.elu(self.c3(h))
        return self.head(F.adaptive_max_pool1d(h, 1).flatten(1))

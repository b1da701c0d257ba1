"""Training for certified Hamming radii: the noise is the smoothing noise, and budgeted-bound training pays off."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import probe
from probe import ProbeError
from probe.certify import certified_radius
from probe.certify.hamming import SymbolEncoding
from probe.certify.substitution import encode_batch


class Recorder(nn.Module):
    """Passes inputs to a model and keeps every training-mode input it saw."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.model(x)


def _task(n=512, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 4, (n, length), generator=g)
    X = encode_batch(SymbolEncoding("onehot", 1, 4, (4, length)), codes, torch.float32)
    return X, ((codes == 0).sum(1) >= 2).long()


def test_noise_training_draws_the_smoothing_noise():
    X, y = _task()
    rec = Recorder(nn.Sequential(nn.Flatten(), nn.Linear(24, 2)))
    loader = DataLoader(TensorDataset(X, y), batch_size=512)          # one batch: the order is known
    probe.train.substitution_noise(rec, loader, keep=0.8, epochs=3, seed=0)
    changed = torch.stack([(s != X).any(1).float().mean() for s in rec.seen])
    assert torch.allclose(changed, torch.full_like(changed, 0.2), atol=0.03)
    assert all(((s.sum(1) == 1).all()) for s in rec.seen)             # still one-hot
    rec.seen.clear()
    probe.train.substitution_noise(rec, loader, ablate=2, epochs=1, seed=0)
    assert (rec.seen[0].sum((1, 2)) == 2).all()                        # two positions seen, the rest blank
    with pytest.raises(ProbeError, match="exactly one"):
        probe.train.substitution_noise(rec, loader, keep=0.8, ablate=2)


def test_budgeted_bound_training_raises_the_certified_radius():
    X, y = _task()
    loader = DataLoader(TensorDataset(X, y), batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(0))

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))

    standard, certified = net(), net()
    probe.train.standard(standard, loader, epochs=12, lr=1e-2, seed=0)
    res = probe.train.hamming_certified(certified, loader, radius=2, epochs=12, warmup=2, kappa=0.65, lr=1e-2, seed=0)
    frame = res.to_frame()
    assert frame.radius.tolist()[:3] == [0, 0, 1] and frame.radius.iloc[-1] == 2
    assert frame.kappa.iloc[-1] == pytest.approx(0.65)
    r_std = certified_radius(standard, X[:128], norm="hamming", method="positional").float().mean()
    r_cert = certified_radius(certified, X[:128], norm="hamming", method="positional").float().mean()
    with torch.no_grad():
        acc = (certified(X).argmax(1) == y).float().mean()
    assert r_cert > r_std + 0.2 and acc > 0.65          # robustness bought with some accuracy

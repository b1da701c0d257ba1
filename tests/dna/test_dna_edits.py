"""Minimal edits: exact on additive models, exact for one edit (the ISM table), masks, pruning, black boxes."""

import itertools

import pytest
import torch

from domains.dna import minimal_edits, saturation_mutagenesis
from probe import Misclassify, OneHot, ProbeError, Threshold
from probe.attacks.edit_search import EditSearch


def _seqs(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=g), 4).permute(0, 2, 1).float()


class Additive(torch.nn.Module):
    """f(x) = sum_{b,p} W[b,p] x[b,p]: the fewest edits that lower f by more than delta take the largest
    per-position drops, so the exact answer is the smallest k whose k largest drops exceed delta."""

    def __init__(self, length, seed=0):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(4, length, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x):
        return (x * self.W).sum((1, 2))[:, None]

    def exact(self, x, delta):
        ref = x.argmax(0)
        W = self.W.detach()
        drops = sorted((float(W[ref[p], p] - W[:, p].min()) for p in range(x.shape[1])), reverse=True)
        total = 0.0
        for k, d in enumerate(drops, 1):
            total += d
            if total > delta:
                return k
        return None


@pytest.mark.parametrize("guide, beam", [("ism", 1), ("ism", 3), ("gradient", 1), ("gradient", 2)])
def test_exact_on_additive_models(guide, beam, device):
    model = Additive(15).to(device)
    X = _seqs(8, 15, seed=1).to(device)
    with torch.no_grad():
        y0 = model(X)[:, 0]
    for delta in (0.5, 2.0, 4.0):
        attack = EditSearch(guide=guide, beam_width=beam, max_edits=15)
        for i in range(len(X)):
            res = attack(model, X[i:i + 1], Threshold(float(y0[i]) - delta), space=OneHot())
            assert int(res.distance.item()) == model.exact(X[i].cpu(), delta)


def test_one_edit_is_the_ism_answer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(6 * 20, 1)).eval()
    X = _seqs(12, 20, seed=3)
    ism = saturation_mutagenesis(model, X)
    with torch.no_grad():
        y0 = model(X)[:, 0]
    for thr in (-0.05, -0.2):
        crit = Threshold(thr, direction="down")
        res = minimal_edits(model, X, crit, max_edits=1)
        can = ((y0[:, None, None] + ism) < thr).flatten(1).any(1) | (y0 < thr)
        assert torch.equal(res.success, can)
        for i in range(len(X)):
            if res.success[i] and y0[i] >= thr:
                (p, ref, alt), = res.edits[i]
                # the chosen substitution is the one of largest margin in the ISM table
                b, q = divmod(int((-(ism[i])).flatten().argmax()), 20)
                assert (p, "ACGT"[b]) == (q, alt)


def test_result_is_one_minimal_and_respects_the_mask():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 7, padding=3), torch.nn.Tanh(), torch.nn.AdaptiveMaxPool1d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    X = _seqs(10, 30, seed=4)
    X0 = X.clone()
    mask = torch.zeros(30, dtype=torch.bool)
    mask[10:20] = True
    res = minimal_edits(model, X, max_edits=8, mask=mask, beam_width=2)
    assert torch.equal(X, X0)
    assert res.success.float().mean() >= 0.8
    crit = Misclassify()
    with torch.no_grad():
        labels = model(X).argmax(1)
    for i in range(len(X)):
        if not res.success[i]:
            continue
        positions = [p for p, _, _ in res.edits[i]]
        assert all(not 10 <= p < 20 for p in positions)
        assert len(positions) == int(res.n_edits[i])
        # undoing any single edit loses the flip
        for p in positions:
            x = res.x_adv[i:i + 1].clone()
            x[0, :, p] = X[i, :, p]
            with torch.no_grad():
                assert not crit.satisfied(model(x), labels[i:i + 1]).item()
    frame = res.to_frame()
    assert list(frame.columns[:5]) == ["sequence", "name", "position", "ref", "alt"]
    assert res.attribution().values.sum() == len(frame)
    # per-sequence masks give the same answer as the shared one
    per = minimal_edits(model, X, max_edits=8, mask=mask.expand(10, 30), beam_width=2)
    assert per.edits == res.edits


def test_black_box_model_uses_forward_calls_only():
    W = torch.randn(4, 12, generator=torch.Generator().manual_seed(2))

    def model(x):
        with torch.no_grad():
            return (x * W).sum((1, 2))[:, None].detach()

    model.differentiable = False
    X = _seqs(3, 12, seed=5)
    res = minimal_edits(model, X, Threshold(-3.0), max_edits=12)
    assert res.success.all()
    with pytest.raises(ProbeError, match="needs gradients"):
        minimal_edits(model, X, Threshold(-3.0), guide="gradient")


def test_bad_arguments():
    X = _seqs(2, 10)
    model = Additive(10)
    with pytest.raises(ProbeError, match="guide must be"):
        minimal_edits(model, X, Threshold(-1.0), guide="magic")
    with pytest.raises(ProbeError, match="mask has 5 positions"):
        minimal_edits(model, X, Threshold(-1.0), mask=torch.zeros(5, dtype=torch.bool))
    # nothing to search for: kept with zero edits
    res = minimal_edits(model, X, Threshold(1e9))
    assert res.success.all() and all(e == [] for e in res.edits)


class Profile(torch.nn.Module):
    """A profile head, (N, 2, L - 2): two tracks per position, no reduction to one score per class."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 2, 3)

    def forward(self, x):
        return self.conv(x)


def test_outputs_that_are_not_n_or_n_k_are_refused_by_shape():
    X = _seqs(3, 10)
    with pytest.raises(ProbeError, match=r"shape \(3, 2, 3\).*needs shape \(N,\) or \(N, K\)"):
        minimal_edits(lambda x: x[:, :2, :3] * 2.0, X)  # (N, 2, 3): would be read as 6 classes
    profile = Profile().train()
    flags = [p.requires_grad for p in profile.parameters()]
    with pytest.raises(ProbeError, match=r"shape \(3, 2, 8\).*\(N,\) or \(N, K\)"):
        minimal_edits(profile, X, Threshold(0.0))
    assert profile.training and flags == [p.requires_grad for p in profile.parameters()]
    # (N,) and (N, K) are what a criterion reads; the same profile model is fine for ISM, which flattens it
    W = Additive(10).W.detach()
    flat = minimal_edits(lambda x: (x * W).sum((1, 2)), X, Threshold(-1.0), max_edits=3)
    column = minimal_edits(lambda x: (x * W).sum((1, 2))[:, None], X, Threshold(-1.0), max_edits=3)
    assert flat.edits == column.edits
    assert saturation_mutagenesis(profile, X).shape == (3, 4, 10, 16)


def test_edits_of_all_sizes_are_found_by_beam_search():
    # an AND of two sites: both must be broken, so the answer is exactly two edits
    def model(x):
        a = x[:, 0, 3] * x[:, 1, 4]
        b = x[:, 2, 8] * x[:, 3, 9]
        return (a + b)[:, None] - 0.5

    X = _seqs(1, 12, seed=0)
    X[0, :, [3, 4, 8, 9]] = 0
    for b, p in ((0, 3), (1, 4), (2, 8), (3, 9)):
        X[0, b, p] = 1
    res = minimal_edits(model, X, Threshold(0.0), max_edits=4, guide="ism")
    assert int(res.n_edits[0]) == 2
    assert {p for p, _, _ in res.edits[0]} in [set(c) for c in itertools.product((3, 4), (8, 9))]


def test_attack_attribution_is_the_minimal_edit_set():
    from domains.dna import attribute

    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool1d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 2)).eval()
    X = _seqs(6, 20, seed=7)
    att = attribute(model, X, method="attack")
    ok = att.extras["success"]
    assert ok.all()
    changed = (att.values != 0).any(1).sum(1)
    assert torch.equal(changed[ok].float(), att.extras["distance"][ok])
    assert (att.values.sum(1) == 0).all()  # +1 at the new base, -1 at the old one

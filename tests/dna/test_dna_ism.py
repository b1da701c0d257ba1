"""Saturation mutagenesis: against tangermeme, batch-size invariance, fast path = plain path, bad input."""

import warnings

import pytest
import torch
from torch import nn

from domains.dna import one_hot, saturation_mutagenesis
from domains.dna.window_ism import WindowISM
from probe import ProbeError


def _seqs(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=g), 4).permute(0, 2, 1).float()


def _model(kind, length, seed=0):
    torch.manual_seed(seed)
    if kind == "basset":
        m = nn.Sequential(nn.Conv1d(4, 8, 7, padding=3), nn.ReLU(), nn.MaxPool1d(3),
                          nn.Conv1d(8, 8, 5, padding="same", dilation=2), nn.BatchNorm1d(8), nn.GELU(),
                          nn.AvgPool1d(2), nn.Conv1d(8, 6, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    elif kind == "strided":
        m = nn.Sequential(nn.Conv1d(4, 6, 4, stride=2, padding=1), nn.ELU(), nn.MaxPool1d(3, stride=2, padding=1),
                          nn.Conv1d(6, 6, 3, padding=1, groups=2), nn.Tanh(), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
                          nn.Linear(6, 2))
    else:  # a profile model: no head, output (N, C, L') flattened
        m = nn.Sequential(nn.Conv1d(4, 5, 9), nn.ReLU(), nn.Conv1d(5, 2, 3, padding=1))
    m(torch.zeros(2, 4, length))
    for mod in m.modules():  # non-trivial batch-norm statistics
        if isinstance(mod, nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


# where the windows end: the first node computed in full (the flatten before the dense head), or none, where the
# output itself runs along the sequence (a profile) and is written in full at the end
HEADS = {"basset": ["reshape"], "strided": ["reshape"], "profile": []}


@pytest.mark.parametrize("kind", ["basset", "strided", "profile"])
def test_fast_path_equals_plain_path(kind, device, monkeypatch):
    X = _seqs(3, 47)
    X[1, :, 10] = 0  # an N
    X[2, :, 0] = 0  # an N at the edge
    m = _model(kind, 47).to(device)
    from probe.graph import capture

    plan = WindowISM(capture(m, X.to(device)), 47, torch.device(device), torch.float32)
    assert [n.kind for n, w in zip(plan.nodes, plan.win) if w is None][:1] == HEADS[kind]
    calls = []
    real = WindowISM.outputs

    def counted(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(WindowISM, "outputs", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fast path must pass its own check
        fast = saturation_mutagenesis(m, X.to(device), fast=True, batch_size=61)
    n_fast = len(calls)
    assert n_fast > 1  # the edits really went through the windows (one call is the check against the plain path)
    plain = saturation_mutagenesis(m, X.to(device), fast=False, batch_size=500)
    assert len(calls) == n_fast  # and the plain path never does
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_independent_of_batch_size_and_zero_at_reference():
    X = _seqs(4, 30)
    m = _model("basset", 30)
    a = saturation_mutagenesis(m, X, batch_size=37)
    b = saturation_mutagenesis(m, X, batch_size=10_000)
    c = saturation_mutagenesis(m, X, batch_size=13, fast=False)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=0)
    assert a.shape == (4, 4, 30, 3)
    assert (a[X.bool()[..., None].expand_as(a)] == 0).all()
    # the raw change, computed by hand for one substitution
    x = X[2:3].clone()
    x[0, :, 17] = 0
    x[0, 1, 17] = 1
    with torch.no_grad():
        expected = m(x) - m(X[2:3])
    torch.testing.assert_close(a[2, 1, 17], expected[0], atol=1e-5, rtol=0)


def test_n_convention_and_centred_attribution():
    X = _seqs(2, 25)
    X[0, :, 5] = 0
    m = _model("basset", 25)
    t = saturation_mutagenesis(m, X, target=1)
    with torch.no_grad():
        base = m(X[:1])[0, 1]
        for b in range(4):
            x = X[:1].clone()
            x[0, b, 5] = 1
            torch.testing.assert_close(t[0, b, 5], m(x)[0, 1] - base, atol=1e-5, rtol=0)
    part = saturation_mutagenesis(m, X, target=1, start=3, end=12)
    assert (part[..., :3] == 0).all() and (part[..., 12:] == 0).all()
    torch.testing.assert_close(part[..., 3:12], t[..., 3:12], atol=1e-6, rtol=0)
    with pytest.raises(ProbeError, match="start < end"):
        saturation_mutagenesis(m, X, start=10, end=5)
    attr = saturation_mutagenesis(m, X, target=1, centered=True)
    torch.testing.assert_close(attr, (t - t.mean(1, keepdim=True)) * X)
    assert attr[0, :, 5].abs().sum() == 0


def test_inputs_and_model_left_as_found():
    X = _seqs(2, 20)
    X0 = X.clone()
    m = _model("basset", 20).train()
    flags = [p.requires_grad for p in m.parameters()]
    saturation_mutagenesis(m, X)
    assert torch.equal(X, X0) and m.training and flags == [p.requires_grad for p in m.parameters()]


def test_fast_path_falls_back_with_a_warning(monkeypatch):
    X = _seqs(2, 20)
    m = _model("basset", 20)
    plain = saturation_mutagenesis(m, X, fast=False)
    real = WindowISM.outputs

    def broken(self, *args):
        return real(self, *args) + 1.0

    monkeypatch.setattr(WindowISM, "outputs", broken)
    with pytest.warns(UserWarning, match="fell back to full forward passes"):
        out = saturation_mutagenesis(m, X, fast=True)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=0)
    with pytest.warns(UserWarning, match="not a torch.nn.Module"):
        saturation_mutagenesis(lambda x: x.sum((1, 2)), X, fast=True)


def test_bad_model_output_names_the_record():
    seqs = ["ACGTACGTAC", "TTTTACGTAC"]
    with pytest.raises(ProbeError, match=r"seq0.*first dimension must be the batch"):
        saturation_mutagenesis(lambda x: x.sum((0, 1)), seqs)
    with pytest.raises(ProbeError, match=r"could not be called on record 'seq0'"):
        saturation_mutagenesis(nn.Linear(7, 2), seqs)
    with pytest.raises(ProbeError, match=r"target=5 is out of range"):
        saturation_mutagenesis(nn.Sequential(nn.Flatten(), nn.Linear(40, 2)), seqs, target=5)
    with pytest.raises(ProbeError, match=r"non-finite output"):
        saturation_mutagenesis(lambda x: x.sum((1, 2)) / 0 * 0, seqs)
    with pytest.raises(ProbeError, match=r"zero length"):
        saturation_mutagenesis(lambda x: x.sum((1, 2)), torch.zeros(2, 4, 0))
    with pytest.raises(ProbeError, match=r"'seq1'.*'Z' at position 0"):
        saturation_mutagenesis(lambda x: x.sum((1, 2)), ["ACGT", "ZCGT"])


def test_equals_tangermeme_raw_outputs():
    # the reference tool is in the test extra: a missing install fails here rather than skipping the comparison
    from tangermeme import saturation_mutagenesis as tsm
    X = one_hot(["ACGTTGCAAGGCTTACCGATAGCTAGCTAACGGATCGATCGGATNNACGT",
                 "TTGACGTAGCTAGCTAGGATCGATCGTAGCTAGCTAGCTGACGGATCAGC"])
    m = _model("basset", X.shape[2]).double()
    Xd = X.double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y0, y_hat = tsm.saturation_mutagenesis(m, Xd, raw_outputs=True, device="cpu", fast=False, batch_size=50)
    ours = saturation_mutagenesis(m, Xd, batch_size=64)
    torch.testing.assert_close(ours, (y_hat - y0[:, None, None, :]), atol=1e-5, rtol=0)
    for k in range(3):
        torch.testing.assert_close(saturation_mutagenesis(m, Xd, target=k), y_hat[..., k] - y0[:, None, None, k],
                                   atol=1e-5, rtol=0)
    # and in float32 against tangermeme's own attribution
    attr = tsm.saturation_mutagenesis(m.float(), X, device="cpu", fast=False, target=1)
    torch.testing.assert_close(saturation_mutagenesis(m, X, target=1, centered=True), attr, atol=1e-5, rtol=0)

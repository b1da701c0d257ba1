"""ISM on the captured graph: equal to full forward passes and to tangermeme, on models that are not nn.Sequential."""

import sys
import warnings
from pathlib import Path

import pytest
import torch
from bpnetlite.bpnet import BPNet, CountWrapper

from domains.dna import saturation_mutagenesis
from domains.dna.window_ism import WindowISM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "graph"))
from models import DictHeads, DilatedTower, HandCNN, StridedPad, one_hot  # noqa: E402


def _bpnet():
    torch.manual_seed(0)
    return BPNet(n_filters=8, n_layers=3, n_control_tracks=0, verbose=False).eval()


def _strand0_total(y):
    return y[:, 0].sum(-1)


class _Profile0(torch.nn.Module):
    """BPNet's profile head summed over the positions of strand 0 (the reduction, as a module for tangermeme)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return _strand0_total(self.model(x)[0])[:, None]


def _sequences(n, length, seed=0):
    X = one_hot(n, length, seed=seed)
    X[1 % n, :, 0] = 0  # N columns: at the left end, in the middle and at the right end
    X[-1, :, length // 2] = 0
    X[0, :, length - 1] = 0
    return X


@pytest.fixture
def window_calls(monkeypatch):
    """Counts the batches that go through the window plan."""
    calls = []
    real = WindowISM.outputs

    def counted(self, *args):
        calls.append(len(args[1]))
        return real(self, *args)

    monkeypatch.setattr(WindowISM, "outputs", counted)
    return calls


def _output_scale(model, X, output=None, reduce=None):
    from probe.graph import select_output

    with torch.no_grad():
        return max(float(select_output(model(X), output, reduce).abs().max()), 1.0)


def _fast(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the window plan must be made and pass its own check
        return saturation_mutagenesis(model, X, fast=True, **kw)


def test_bpnet_count_and_profile_heads_equal_tangermeme(window_calls):
    from tangermeme import saturation_mutagenesis as tsm

    bp = _bpnet().double()
    X = _sequences(2, 300).double()
    for model, ours in ((CountWrapper(bp), {}), (_Profile0(bp), None)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y0, y_hat = tsm.saturation_mutagenesis(model, X, raw_outputs=True, device="cpu", fast=False,
                                                   batch_size=64)
        want = (y_hat - y0[:, None, None, :])[..., 0]
        n_calls = len(window_calls)
        if ours is None:  # the profile head through output= and reduce=, not through the wrapper
            got = _fast(bp, X, output=0, reduce=_strand0_total, batch_size=100)
        else:
            got = _fast(model, X, batch_size=100)
        assert len(window_calls) > n_calls + 1
        scale = float(y_hat.abs().max())
        torch.testing.assert_close(got, want, atol=1e-4 * scale, rtol=0)
        assert float((got - want).abs().max()) < 1e-9 * max(scale, 1.0)  # float64: rounding only


CASES = {
    "hand": (HandCNN, {}),
    "tower": (DilatedTower, {"reduce": lambda y: y.sum(-1)}),
    "tower_tracks": (DilatedTower, {}),
    "dict_count": (DictHeads, {"output": "count"}),
    "dict_profile": (DictHeads, {"output": "profile", "reduce": lambda y: y.sum(-1)}),
    "strided_pad": (StridedPad, {}),
    # element-wise activations the windows pass through although no certificate bounds them
    "sequential_acts": (lambda: torch.nn.Sequential(
        torch.nn.Conv1d(4, 6, 5, padding=2), torch.nn.ReLU6(), torch.nn.Conv1d(6, 6, 3, padding=1), torch.nn.PReLU(6),
        torch.nn.Conv1d(6, 4, 3, padding=1), torch.nn.Mish(), torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 2)), {}),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("length", [37, 96])
def test_equals_full_forward_passes(name, length, window_calls):
    make, kw = CASES[name]
    model = make().eval()
    X = _sequences(3, length)
    fast = _fast(model, X, batch_size=61, **kw)
    assert len(window_calls) > 2  # the check plus the batches of edits went through the windows
    n = len(window_calls)
    plain = saturation_mutagenesis(model, X, fast=False, batch_size=500, **kw)
    assert len(window_calls) == n  # the plain path never does
    assert fast.shape == plain.shape
    # rounding of f(mutant) - f(reference) in float32, relative to the outputs' size
    torch.testing.assert_close(fast, plain, atol=2e-6 * _output_scale(model, X, **kw), rtol=0)
    # every substitution of an N column is an edit; the reference base is not
    assert (fast[1, :, 0] != 0).any() and (fast[0][X[0].bool()] == 0).all()


@pytest.mark.parametrize("name", ["hand", "tower", "strided_pad"])
def test_independent_of_batch_size(name):
    make, kw = CASES[name]
    model = make().eval()
    X = _sequences(4, 80)
    a = _fast(model, X, batch_size=7, **kw)
    b = _fast(model, X, batch_size=1000, **kw)
    c = _fast(model, X, **kw)  # the batch size the plan picks
    tol = 2e-6 * _output_scale(model, X, **kw)  # convolutions sum in another order at another batch size
    torch.testing.assert_close(a, b, atol=tol, rtol=0)
    torch.testing.assert_close(a, c, atol=tol, rtol=0)


def test_part_of_the_sequence_and_target():
    model = HandCNN().eval()
    X = _sequences(2, 50)
    full = _fast(model, X)
    part = _fast(model, X, start=5, end=20, target=1)
    assert (part[..., :5] == 0).all() and (part[..., 20:] == 0).all()
    torch.testing.assert_close(part[..., 5:20], full[..., 5:20, 1], atol=1e-6, rtol=0)


def test_capture_of_explicit_padding():
    # aten.pad(x, pad, "constant", value): its third argument is the mode, the value comes fourth
    from probe.graph import capture

    model, X = StridedPad().eval(), one_hot(3, 50)
    g = capture(model, X)
    assert [n.attrs["value"] for n in g.nodes if n.kind == "pad"] == [0.5]
    with torch.no_grad():
        torch.testing.assert_close(g(X), model(X), atol=1e-6, rtol=0)


def test_windows_and_work_of_a_residual_tower():
    # a Basenji-style tower: the window grows by (K - 1) * d per dilated conv, halves at the pool,
    # and the crop shifts it; the flatten-free head needs no full-length node
    from probe.graph import capture

    X = one_hot(2, 200)
    plan = WindowISM(capture(DilatedTower().eval(), X, reduce=lambda y: y.sum(-1)), 200, X.device, torch.float32)
    convs = [w.width for n, w in zip(plan.nodes, plan.win) if n.kind == "conv"]
    assert convs[:4] == [5, 3 + 4, 7 + 8, 15 + 16]  # stem, then the pool's (5 - 1 + 1) // 2 + 1 = 3
    assert plan.win[-1] is None and plan.materialised == ["sum_1 (incremental)"]
    assert plan.full_macs / plan.window_macs > 3


def test_fall_back_with_a_warning_when_the_check_fails(monkeypatch):
    model = HandCNN().eval()
    X = _sequences(2, 40)
    plain = saturation_mutagenesis(model, X, fast=False)
    real = WindowISM.outputs
    monkeypatch.setattr(WindowISM, "outputs", lambda self, *a: real(self, *a) + 1.0)
    with pytest.warns(UserWarning, match="fell back to full forward passes"):
        out = saturation_mutagenesis(model, X, fast=True)
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)


def test_bfloat16_compute_dtype(window_calls):
    model = DilatedTower().eval()
    X = _sequences(2, 64)
    kw = {"reduce": lambda y: y.sum(-1)}
    plain = saturation_mutagenesis(model, X, fast=False, **kw)
    low = _fast(model, X, dtype=torch.bfloat16, **kw)
    assert window_calls and low.dtype == plain.dtype
    err, scale = float((low - plain).abs().max()), _output_scale(model, X, **kw)
    assert err < 2e-2 * scale  # bfloat16 rounding (8 bits) of outputs of this size, not a wrong window
    assert err > 1e-5 * scale  # it really computed in bfloat16


@pytest.mark.parametrize("name", ["tower", "dict_profile"])
def test_no_host_sync_per_batch(name):
    from probe.testing import count_host_syncs

    make, kw = CASES[name]
    model = make().eval()
    X = _sequences(6, 64)
    counts = []
    for n in (2, 6):  # 2 x 192 and 6 x 192 edits (and the N columns): 7 and 19 batches of 64
        _fast(model, X[:n], batch_size=64, **kw)
        with count_host_syncs("cpu") as counter:
            _fast(model, X[:n], batch_size=64, **kw)
        counts.append(counter.count)
    assert counts[0] == counts[1] <= 16, counts  # the capture, the plan, the check: none per batch


class _CropTower(torch.nn.Module):
    """BPNet's shape, small: a stem, dilated residual convolutions, a crop and a mean over it."""

    def __init__(self, act):
        super().__init__()
        torch.manual_seed(3)
        self.stem = torch.nn.Conv1d(4, 8, 5, padding=2)
        self.convs = torch.nn.ModuleList(torch.nn.Conv1d(8, 8, 3, padding=d, dilation=d) for d in (1, 2, 4, 8))
        self.act = act()
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = self.act(self.stem(x))
        for conv in self.convs:
            h = h + self.act(conv(h))
        return self.head(h[:, :, 20:-20].mean(-1))


@pytest.mark.parametrize("act", [torch.nn.ReLU, torch.nn.GELU])
def test_trimmed_windows_and_strided_runs_equal_whole_windows(act):
    # per batch, each window is cut to what can reach the crop for some edit of the batch, and a batch of
    # three edits per position reads the references as strided views: both equal the whole windows and
    # the model itself, at the ends of the axis, at the crop's edges and inside it
    from probe.graph import capture

    model = _CropTower(act).eval()
    X = one_hot(1, 100, seed=4)
    plan = WindowISM(capture(model, X), 100, X.device, torch.float32)
    assert set(range(len(plan.nodes) - 2)) <= set(plan.change)  # every node up to the mean carries a change
    refs = plan.references(X)
    ref_base = X[0].argmax(0)
    trimmed = 0
    for p0, k in [(0, 3), (5, 8), (17, 6), (45, 10), (92, 8)]:
        pos = torch.arange(p0, p0 + k).repeat_interleave(3)
        base = torch.stack([torch.tensor([b for b in range(4) if b != ref_base[p]]) for p in range(p0, p0 + k)])
        base = base.reshape(-1)
        seq = torch.zeros_like(pos)
        mutants = X[seq].clone()
        mutants[torch.arange(len(pos)), :, pos] = 0
        mutants[torch.arange(len(pos)), base, pos] = 1
        want = model(mutants)
        span = (p0, p0 + k - 1)
        for args in [(), (span,), (span, (0, p0, k))]:
            torch.testing.assert_close(plan.outputs(refs, seq, base, pos, *args), want, atol=2e-6, rtol=1e-5)
        need = plan._needed(span)
        trimmed += sum(b - a < plan.win[i].width for i, (a, b) in need.items())
    assert trimmed > 0

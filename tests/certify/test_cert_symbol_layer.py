"""Substitution smoothing's fast paths: the first layer read from symbol codes or bit flips gives the model's
scores, and the certificate with the fast path or with exact early termination is the plain one."""

import warnings

import pytest
import torch
from torch import nn

import probe
from probe.certify import RandomizedAblation, SubstitutionSmoothing
from probe.certify.hamming import SymbolEncoding, symbol_encoding
from probe.certify.smoothing import clopper_pearson_lower
from probe.certify.substitution import _substitute_with, encode_batch, flip_mask, flip_positions, substitute
from probe.certify.symbol_layer import (
    CodeConv1d,
    FlipLinear,
    _agrees,
    _global_max,
    _max_over_positions,
    first_layer_plan,
)


def _dna(n, length, seed=0, unknown=0.0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 4, (n, length), generator=g)
    codes[torch.rand(n, length, generator=g) < unknown] = -1
    enc = SymbolEncoding("onehot", 1, 4, (4, length))
    return enc, codes, encode_batch(enc, codes, torch.float32)


def _noise(keep=0.8, alphabet=4):
    return lambda c, mut, g: substitute(c, mut, keep, alphabet, g)


CONVS = [dict(kernel_size=11, padding=5), dict(kernel_size=5, padding=2), dict(kernel_size=7, stride=2),
         dict(kernel_size=6, padding="same", dilation=2), dict(kernel_size=4, stride=3, dilation=2, padding=4),
         dict(kernel_size=3, padding=1, bias=False), dict(kernel_size=1), dict(kernel_size=13, padding=0)]


@pytest.mark.parametrize("conv", CONVS)
def test_conv_on_codes_gives_the_models_scores(conv, device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 16, **conv), nn.ReLU(), nn.Flatten()).eval().to(device)
    enc, codes, x = _dna(3000, 40, unknown=0.05)
    codes, x = codes.to(device), x.to(device)
    plan = CodeConv1d(model[0], model[1:], 40)
    with torch.inference_mode():
        want, got = model(x), plan(codes)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    head = nn.Linear(want.shape[1], 3).to(device)             # a decision on top: exactly the same argmax
    with torch.inference_mode():
        assert torch.equal(head(got).argmax(1), head(want).argmax(1))


@pytest.mark.parametrize("pool, on_lookups", [(nn.MaxPool1d(2), 2), (nn.MaxPool1d(3), 3),
                                              (nn.MaxPool1d(3, stride=2), 1), (nn.MaxPool1d(2, padding=1), 1),
                                              (nn.AvgPool1d(2), 1)])
def test_the_rest_of_the_model_keeps_its_values(pool, on_lookups):
    # ReLU before a max pool runs after it, pooling runs on the lookups, a global max pool is a max
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 6, 5, padding=1), nn.ReLU(), pool, nn.Conv1d(6, 5, 3), nn.ReLU(),
                          nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(5, 3)).eval()
    enc, codes, x = _dna(2000, 37, seed=1)
    plan = first_layer_plan(model, enc, x[:3], codes[:3], torch.ones_like(codes[:3], dtype=torch.bool), _noise())
    assert isinstance(plan, CodeConv1d)
    assert plan.pool == on_lookups
    with torch.inference_mode():
        want, got = model(x), plan(codes)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    assert torch.equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("second", [dict(kernel_size=5, padding=2), dict(kernel_size=3, stride=2),
                                    dict(kernel_size=3, dilation=2, padding="same"), dict(kernel_size=4, groups=2),
                                    dict(kernel_size=3, padding=1, bias=False)])
def test_convolutions_after_the_lookups_run_channels_last(second):
    torch.manual_seed(2)
    trunk = [nn.Conv1d(4, 8, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(8, 6, **second), nn.ReLU(),
             nn.Conv1d(6, 4, 3), nn.Flatten()]
    width = nn.Sequential(*trunk)(torch.zeros(1, 4, 37)).shape[1]
    model = nn.Sequential(*trunk, nn.Linear(width, 3)).eval()
    enc, codes, x = _dna(1500, 37, seed=3)
    plan = first_layer_plan(model, enc, x[:3], codes[:3], torch.ones_like(codes[:3], dtype=torch.bool), _noise())
    assert isinstance(plan, CodeConv1d) and [op for op, _ in plan.on_lookups] == ["pool", "relu", "conv", "relu",
                                                                                   "conv"]
    with torch.inference_mode():
        want, got = model(x), plan(codes)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_max_by_halving_is_the_max():
    g = torch.Generator().manual_seed(0)
    for length in range(1, 70):
        h = torch.randn(3, length, 5, generator=g)
        assert torch.equal(_max_over_positions(h), h.amax(1, keepdim=True)), length
        assert torch.equal(_global_max(h.transpose(1, 2).contiguous()), h.amax(1, keepdim=True).transpose(1, 2))


def test_conv_on_codes_in_float64_and_with_big_tables():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(4, 2, 7, padding=3), nn.Flatten()).double().eval()
    enc, codes, x = _dna(500, 30)
    plan = CodeConv1d(model[0], model[1:], 30)
    assert plan.chunks == 1 and plan.width == 7                  # 5^7 x 2 entries still fit: one lookup
    with torch.inference_mode():
        torch.testing.assert_close(plan(codes), model(x.double()), atol=1e-12, rtol=1e-12)


def test_flip_linear_gives_the_models_scores():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 32), nn.ReLU(), nn.Linear(32, 2)).eval()
    x = (torch.rand(7, 300, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    plan = FlipLinear(model[0], model[1:], x)
    g = torch.Generator().manual_seed(1)
    rows = torch.randint(0, 7, (4000,), generator=g)
    flips = torch.rand(4000, 300, generator=g) >= 0.9
    flips[:5] = False                                            # rows without flips are the clean inputs
    with torch.inference_mode():
        want, got = model(torch.where(flips, 1 - x[rows], x[rows])), plan(flips, rows)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    assert torch.equal(got.argmax(1), want.argmax(1))
    # the flipped features padded with -1 (what the sampler draws) give the same
    order = torch.argsort((~flips).to(torch.int8), dim=1, stable=True)[:, :flips.sum(1).max()]
    padded = torch.where(torch.gather(flips, 1, order), order, -1)
    assert torch.equal(flip_mask(padded, 300), flips)
    with torch.inference_mode():
        torch.testing.assert_close(plan(padded, rows), got, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("per_draw", [None, 3])
def test_flips_drawn_as_gaps_have_the_law_of_one_uniform_per_position(per_draw):
    g = torch.Generator().manual_seed(0)
    free = torch.tensor([40] * 20_000 + [7] * 20_000)
    pos = flip_positions(free, 0.15, g, per_draw=per_draw)       # per_draw=3 draws again and again
    assert bool(((pos >= -1) & (pos < free[:, None])).all())
    assert bool(((pos[:, 1:] > pos[:, :-1]) | (pos[:, 1:] < 0)).all())             # increasing, then padding
    mask = flip_mask(pos, 40).double()
    assert torch.equal(mask.sum(1), (pos >= 0).sum(1).double()) and bool((mask[20_000:, 7:] == 0).all())
    rate = mask[:20_000].mean(0)
    assert float((rate - 0.15).abs().max()) < 0.012                                # every position flips at q
    both = (mask[:20_000, :-1] * mask[:20_000, 1:]).mean(0)                      # neighbours independently
    assert float((both - 0.15 ** 2).abs().max()) < 0.006
    count = mask[:20_000].sum(1)
    assert abs(float(count.var()) - 40 * 0.15 * 0.85) < 0.3                      # binomial spread


@pytest.mark.parametrize("alphabet, keep", [(4, 0.9), (4, 0.8), (2, 0.95), (20, 0.7), (3, 0.5)])
def test_substitution_is_the_one_uniform_rule_on_every_boundary(alphabet, keep):
    # u < keep keeps, else the symbol moves by 1 + floor((u - keep) K / (1 - keep)) mod K + 1, checked on every
    # float32 value rand() can return near keep and near each shift boundary, and on random ones
    others = alphabet - 1
    grid = torch.arange(2 ** 24, dtype=torch.float64).div_(2 ** 24).float()
    near = torch.zeros_like(grid, dtype=torch.bool)
    for j in range(others + 1):
        edge = keep + j * (1 - keep) / others
        near |= (grid - edge).abs() < 2 ** -14
    u = torch.cat([grid[near], torch.rand(200_000, generator=torch.Generator().manual_seed(0))])
    for code in range(alphabet):
        codes = torch.full(u.shape, code, dtype=torch.long)
        mutable = torch.rand(u.shape, generator=torch.Generator().manual_seed(code)) < 0.9
        shift = ((u - keep) * (others / (1 - keep))).long().clamp(0, others - 1) + 1
        want = torch.where((u >= keep) & mutable, (codes + shift) % alphabet, codes)
        assert torch.equal(_substitute_with(u, codes, mutable, keep, alphabet), want)


def test_plans_are_made_only_for_plain_first_layers():
    enc, codes, x = _dna(4, 20)
    mut = torch.ones_like(codes, dtype=torch.bool)

    def plan(model, e=enc, xx=x, c=codes):
        return first_layer_plan(model.eval(), e, xx, c, mut, _noise())

    assert isinstance(plan(nn.Sequential(nn.Conv1d(4, 3, 5), nn.Flatten())), CodeConv1d)
    assert isinstance(plan(nn.Conv1d(4, 3, 5)), CodeConv1d)

    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 3, 5)

        def forward(self, z):
            return self.conv(z * 2).flatten(1)

    hooked = nn.Sequential(nn.Conv1d(4, 3, 5), nn.Flatten())
    hooked[0].register_forward_hook(lambda mod, inp, out: out * 0)
    for model in (Own(), hooked, nn.Sequential(nn.ReLU(), nn.Conv1d(4, 3, 5), nn.Flatten()),
                  nn.Sequential(nn.Conv1d(4, 4, 5, groups=2), nn.Flatten()),
                  nn.Sequential(nn.Conv1d(4, 3, 5, padding=2, padding_mode="circular"), nn.Flatten()),
                  nn.Sequential(nn.Flatten(), nn.Linear(80, 2))):            # a linear layer on one-hot input
        assert plan(model) is None, model
    bits = torch.randint(0, 2, (3, 2, 5)).float()
    benc = symbol_encoding(probe.Bits(), bits)
    bcodes, bmut = benc.codes(bits), torch.ones(3, 10, dtype=torch.bool)
    assert isinstance(first_layer_plan(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)).eval(), benc, bits, bcodes,
                                       bmut, _noise(0.8, 2)), FlipLinear)
    assert first_layer_plan(nn.Sequential(nn.Linear(5, 2), nn.Flatten()).eval(), benc, bits, bcodes, bmut,
                            _noise(0.8, 2)) is None                          # acts on the last axis only


def test_a_plan_that_disagrees_with_the_model_is_refused_with_a_warning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 3, 5), nn.Flatten()).eval()
    enc, codes, x = _dna(4, 20)
    mut = torch.ones_like(codes, dtype=torch.bool)
    wrong = CodeConv1d(nn.Conv1d(4, 3, 5), model[1:], 20)                   # another layer's weights
    with pytest.warns(UserWarning, match="plain forward pass"):
        assert not _agrees(wrong, model, enc, x, codes, mut, _noise(), 64, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _agrees(CodeConv1d(model[0], model[1:], 20), model, enc, x, codes, mut, _noise(), 64, 0)


def _cnn(length=30, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(4, 8, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def _same(a, b, counts=True):
    assert torch.equal(a.label, b.label) and torch.equal(a.radius, b.radius)
    if counts:
        assert torch.equal(a.counts, b.counts) and torch.equal(a.p_lower, b.p_lower)


def test_fast_path_gives_the_plain_certificate_with_the_same_counts():
    _, _, x = _dna(5, 30, seed=3, unknown=0.03)
    model = _cnn()
    for keep in (0.6, 0.9):
        kw = dict(keep=keep, n0=50, n=3000, batch_size=700, seed=1)
        fast = SubstitutionSmoothing(model, **kw).certify(x)
        plain = SubstitutionSmoothing(model, fast=False, **kw).certify(x)
        _same(fast, plain)
    assert len(set(plain.counts[:, 1].tolist())) > 1                        # the inputs differ
    ablated = [RandomizedAblation(model, kept=12, n0=50, n=2000, batch_size=900, fast=f).certify(x)
               for f in (True, False)]
    _same(*ablated)


def test_fast_path_on_bits_gives_the_plain_certificate():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(200, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    x = (torch.rand(4, 200, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    mask = torch.zeros(200, dtype=torch.bool)
    mask[:20] = True
    for space in (probe.Bits(), probe.Bits(mask=mask)):
        kw = dict(keep=0.95, space=space, n0=50, n=2000, batch_size=600)
        _same(SubstitutionSmoothing(model, **kw).certify(x), SubstitutionSmoothing(model, fast=False, **kw).certify(x))


class _Coin(nn.Module):
    """Class 0 where the noisy symbol at position 0 is A or C; P(class 0) = keep + beta if it is A."""

    def forward(self, x):
        return torch.stack([x[:, 0, 0] + x[:, 1, 0], x[:, 2, 0] + x[:, 3, 0]], 1)


@pytest.mark.parametrize("n, batch", [(4000, 1000), (3000, 700), (500, 200)])
def test_early_stop_gives_the_full_runs_labels_and_radii(n, batch):
    # inputs with P(class 0) = 0.95 (radius 0, settled early), 0.75 (radius 0), 0.5 (abstains) and a CNN's
    codes = torch.tensor([[0] * 8, [1] * 8, [2] * 8, [0] * 8])
    enc = SymbolEncoding("onehot", 1, 4, (4, 8))
    x = encode_batch(enc, codes, torch.float32)
    fired = []
    for model, keep in ((_Coin(), 0.9), (_Coin(), 0.7), (_cnn(8, seed=2), 0.8)):
        kw = dict(keep=keep, n0=60, n=n, batch_size=batch, seed=4)
        full = SubstitutionSmoothing(model, **kw).certify(x)
        early = SubstitutionSmoothing(model, early_stop=True, **kw).certify(x)
        _same(early, full, counts=False)
        stopped = early.samples < n
        fired.append(bool(stopped.any()))
        assert bool((early.counts <= full.counts).all())                        # a prefix of the same stream
        assert torch.equal(early.counts[~stopped], full.counts[~stopped])
        assert torch.equal(early.counts.sum(1), early.samples)
        assert bool((early.p_lower <= full.p_lower).all())
        ok = early.label >= 0                         # the bound counts the unseen samples as misses
        n_a = early.counts[ok].gather(1, early.label[ok, None]).squeeze(1)
        assert torch.equal(early.p_lower[ok], torch.as_tensor(clopper_pearson_lower(n_a.numpy(), n, 0.001),
                                                              dtype=early.p_lower.dtype))
    assert fired[0] and fired[1]


def test_thresholds_are_where_the_outcome_steps():
    smooth = SubstitutionSmoothing(_Coin(), keep=0.9, n=300, alpha=0.01)
    enc = SymbolEncoding("onehot", 1, 4, (4, 8))
    steps = smooth._thresholds(8, enc)
    outcome = [smooth.outcome(k, 8, enc) for k in range(301)]
    assert outcome == sorted(outcome) and outcome[-1] == len(steps) - 1 >= 1
    assert steps == [min(k for k in range(301) if outcome[k] >= level) for level in range(len(steps))]


def test_fast_sampling_loop_does_not_wait_per_batch(device):
    from probe.testing import count_host_syncs

    _, _, x = _dna(3, 30, seed=5)
    model, x = _cnn().to(device), x.to(device)
    counts = {}
    for n in (1000, 4000):  # 6 and 24 batches of 500 noisy copies, plus the n0 = 100 selection samples
        smoothing = SubstitutionSmoothing(model, keep=0.9, n0=100, n=n, batch_size=500)
        smoothing.certify(x)
        with count_host_syncs(device) as counter:
            smoothing.certify(x)
        counts[n] = counter.count
    assert counts[1000] == counts[4000], counts


def test_fast_path_leaves_model_and_inputs_as_they_were():
    _, _, x = _dna(3, 30, seed=6)
    model = _cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x0 = x.clone()
    SubstitutionSmoothing(model, keep=0.9, n0=50, n=500, batch_size=300).certify(x)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(x, x0)

"""Certified Hamming radii: the exact likelihood-ratio thresholds, exact soundness by enumeration, bound
propagation on one-hot and bit inputs, randomized ablation, and the code distance."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

import probe
from probe import ProbeError
from probe.certify import (
    RandomizedAblation,
    SubstitutionSmoothing,
    ablation_radius,
    ablation_threshold,
    certified_radius,
    code_distance,
    substitution_radius,
    substitution_threshold,
)
from probe.certify.hamming import SymbolEncoding, hamming_set
from probe.certify.substitution import encode_batch, substitute, substitution_regions, threshold_fraction
from probe.testing import all_sequences, exact_hamming_radius, exact_substitution_probabilities

DNA6 = SymbolEncoding("onehot", 1, 4, (4, 6))


# ---------------------------------------------------------------------------------------------------------------
# the thresholds


def test_r1_closed_form_dna_keep_08():
    # K = alphabet - 1 = 3, beta = 0.2 / 3: keep + (K - 1) beta + beta (keep - 1/2) / keep = 0.8 + 2/15 + 1/40
    assert threshold_fraction(1, keep=0.8, alphabet=4) == Fraction(23, 24)
    assert substitution_threshold(1, keep=0.8, alphabet=4) == pytest.approx(0.958333333333333, abs=1e-15)


@pytest.mark.parametrize("alphabet", [2, 3, 4, 20])
@pytest.mark.parametrize("keep", ["0.55", "0.6", "0.8", "0.95"])
def test_r1_closed_form_any_alphabet(alphabet, keep):
    a = Fraction(keep)
    K = alphabet - 1
    beta = (1 - a) / K
    assert threshold_fraction(1, keep=a, alphabet=alphabet) == a + (K - 1) * beta + beta * (a - Fraction(1, 2)) / a


def _worst_case_lp(length, r, keep, alphabet, p_a):
    """min P_xbar(A) over base classifiers (0 <= A <= 1) with P_x(A) >= p_a, from the product noise directly."""
    z = all_sequences(length, alphabet).numpy()
    x = np.zeros(length, dtype=int)
    xbar = x.copy()
    xbar[:r] = 1
    beta = (1 - keep) / (alphabet - 1)

    def prob(c):
        d = (z != c).sum(1)
        return keep ** (length - d) * beta ** d

    px, pxb = prob(x), prob(xbar)
    res = linprog(pxb, A_ub=-px[None], b_ub=[-p_a], bounds=(0, 1), method="highs")
    return res.fun


@pytest.mark.parametrize("alphabet,length", [(4, 4), (2, 7), (3, 5)])
def test_threshold_is_the_neyman_pearson_worst_case(alphabet, length):
    # an independent computation: a linear programme over every noise outcome of a short sequence. At p_A = rho_r
    # the worst base classifier is exactly balanced at xbar, and the threshold does not depend on the length
    for r in range(1, 4):
        rho = substitution_threshold(r, keep=0.8, alphabet=alphabet)
        assert _worst_case_lp(length, r, 0.8, alphabet, rho) == pytest.approx(0.5, abs=1e-9)
        assert _worst_case_lp(length, r, 0.8, alphabet, rho + 1e-4) > 0.5


def test_regions_hold_all_mass_and_thresholds_increase():
    for alphabet in (2, 4):
        regions = substitution_regions(5, keep=0.7, alphabet=alphabet)
        assert sum(px for px, _ in regions) == 1 and sum(q for _, q in regions) == 1
        rho = [threshold_fraction(r, keep=0.7, alphabet=alphabet) for r in range(8)]
        assert rho[0] == Fraction(1, 2) and all(a < b < 1 for a, b in zip(rho, rho[1:]))


def test_substitution_radius_is_the_last_threshold_below():
    keep, k = 0.9, 4
    rho = [substitution_threshold(r, keep=keep, alphabet=k) for r in range(6)]
    for r in range(1, 5):
        exact = threshold_fraction(r, keep=keep, alphabet=k)
        assert Fraction(rho[r]) >= exact > Fraction(math.nextafter(rho[r], 0))   # the float rounded up
        assert substitution_radius(exact, keep=keep, alphabet=k) == r - 1         # strict: p_A > rho_r
        assert substitution_radius(math.nextafter(rho[r], 1), keep=keep, alphabet=k) == r
    assert substitution_radius(0.5, keep=keep, alphabet=k) == 0
    assert substitution_radius(0.999999, keep=keep, alphabet=k, max_radius=2) == 2
    with pytest.raises(ProbeError, match="max_radius"):
        substitution_radius(1.0, keep=keep, alphabet=k)
    with pytest.raises(ProbeError, match="keep"):
        substitution_threshold(1, keep=0.25, alphabet=4)
    with pytest.raises(ProbeError, match="alphabet"):
        substitution_threshold(1, keep=0.9, alphabet=1)


def test_substitution_noise_has_the_stated_law():
    g = torch.Generator().manual_seed(0)
    codes = torch.zeros(200_000, 1, dtype=torch.long)
    out = substitute(codes, torch.ones_like(codes, dtype=torch.bool), 0.7, 4, g)
    freq = torch.bincount(out.flatten(), minlength=4).double() / len(out)
    assert torch.allclose(freq, torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64), atol=4e-3)


# ---------------------------------------------------------------------------------------------------------------
# exact soundness on all 4^6 sequences


@pytest.fixture(scope="module")
def cnn6():
    """A small CNN on 6 bp trained to call "at least two A's" on all 4^6 sequences (float64)."""
    z = all_sequences(6, 4)
    X = encode_batch(DNA6, z, torch.float64)
    y = ((z == 0).sum(1) >= 2).long()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2)).double()
    opt = torch.optim.Adam(m.parameters(), 3e-2)
    for _ in range(100):
        loss = nn.functional.cross_entropy(m(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval(), z, X


def _distances(z):
    return torch.cat([(z[s:s + 512, None, :] != z[None]).sum(2).to(torch.int8) for s in range(0, len(z), 512)])


def test_smoothed_classifier_keeps_its_label_within_the_certified_radius(cnn6):
    model, z, X = cnn6
    keep = 0.9
    P = exact_substitution_probabilities(model, X, keep=keep)           # (4096, 2), every noise outcome
    assert torch.allclose(P.sum(1), torch.ones(len(P), dtype=torch.float64))
    p_a, label = P.max(1)
    radius = torch.tensor([substitution_radius(float(p), keep=keep, alphabet=4, max_radius=6) for p in p_a])
    assert (radius >= 1).sum() > 100 and (radius >= 2).sum() > 5           # the check reaches beyond r = 1
    D = _distances(z)
    for i in (radius >= 1).nonzero().flatten().tolist():
        near = (D[i] <= radius[i]).nonzero().flatten()
        assert bool((P[near, label[i]] > 0.5 - 1e-12).all()), f"sequence {i}: label changes within radius"


def test_sampled_certificate_stays_below_the_exact_one(cnn6):
    model, z, X = cnn6
    keep = 0.9
    idx = torch.arange(0, 4096, 97)
    P = exact_substitution_probabilities(model, X[idx], keep=keep)
    p_a, label = P.max(1)
    exact = torch.tensor([substitution_radius(float(p), keep=keep, alphabet=4, max_radius=6) for p in p_a])
    cert = SubstitutionSmoothing(model, keep=keep, n0=100, n=20_000, alpha=0.001, batch_size=8192).certify(X[idx])
    ok = cert.label >= 0
    assert ok.float().mean() > 0.8
    assert torch.equal(cert.label[ok], label[ok])
    assert bool((cert.p_lower[ok] <= p_a[ok]).all()) and bool((cert.radius <= exact).all())
    assert (cert.radius >= 1).any()
    # the same answer whatever the batch size (one stream of samples)
    again = SubstitutionSmoothing(model, keep=keep, n0=100, n=20_000, alpha=0.001, batch_size=20_000)
    assert torch.equal(again.certify(X[idx]).counts.sum(1), cert.counts.sum(1))


def test_predict_abstains_where_classes_tie():
    class Coin(nn.Module):  # scores depend only on the noise at position 0: class 0 with prob keep + beta
        def forward(self, x):
            return torch.stack([x[:, 0, 0] + x[:, 1, 0], x[:, 2, 0] + x[:, 3, 0]], 1)

    X = encode_batch(DNA6, torch.zeros(2, 6, dtype=torch.long), torch.float32)
    smooth = SubstitutionSmoothing(Coin(), keep=0.4, n=2000)              # P(class 0) = 0.4 + 0.2 = 0.6
    assert smooth.predict(X).tolist() == [0, 0]
    tie = SubstitutionSmoothing(Coin(), keep=1 / 3 + 1e-9, n=500)         # P(class 0) ~ 1/2
    assert (tie.certify(X).label == -1).all()


# ---------------------------------------------------------------------------------------------------------------
# bound propagation with a budget of substitutions


def test_hamming_set_concretization_is_exact_for_linear_functions():
    torch.manual_seed(3)
    z = all_sequences(6, 4)
    X = encode_batch(DNA6, z[[5, 700, 4000]], torch.float64)
    A = torch.randn(3, 2, 4, 6, dtype=torch.float64)
    values = torch.einsum("skl,mkl->ms", A[0], encode_batch(DNA6, z, torch.float64))  # every sequence, input 0
    d = (z != z[5]).sum(1)
    for r in range(4):
        s = hamming_set(X, r)
        lo = s.concretize_lower(A)
        assert torch.allclose(lo[0], values[d <= r].amin(0))


@pytest.mark.parametrize("method", ["crown", "positional"])
@pytest.mark.parametrize("space", ["onehot", "bits"])
def test_radius_of_a_linear_classifier_is_exact(space, method):
    torch.manual_seed(1)
    if space == "onehot":
        X = encode_batch(DNA6, all_sequences(6, 4)[torch.randperm(4096)[:30]], torch.float64)
        model, sp = nn.Sequential(nn.Flatten(), nn.Linear(24, 3)).double(), probe.OneHot()
    else:
        X = torch.randint(0, 2, (30, 10)).double()
        model, sp = nn.Linear(10, 2).double(), probe.Bits()
    cr = certified_radius(model, X, norm="hamming", space=sp, method=method)
    assert cr.dtype == torch.long
    assert torch.equal(cr, exact_hamming_radius(model, X, space=sp))


def test_crown_radius_is_sound_on_a_relu_cnn(cnn6):
    model, z, X = cnn6
    idx = torch.randperm(4096, generator=torch.Generator().manual_seed(0))[:48]
    x0 = X[idx].clone()
    cr = certified_radius(model, X[idx], norm="hamming", space=probe.OneHot(), method="crown")
    exact = exact_hamming_radius(model, X[idx])
    assert bool((cr <= exact).all()) and (cr >= 1).any()
    assert torch.equal(X[idx], x0)
    ibp = certified_radius(model, X[idx], norm="hamming", method="ibp")
    assert bool((ibp <= cr).all())
    halves = torch.cat([certified_radius(model, X[idx][s], norm="hamming", batch_size=7) for s in
                        (slice(0, 20), slice(20, 48))])
    assert torch.equal(halves, cr)


def _pooled_cnn(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(6, 6, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(6, 2)).double().eval()


def test_positional_bound_is_sound_through_pooling_and_bits(cnn6):
    model, z, X = cnn6
    idx = torch.randperm(4096, generator=torch.Generator().manual_seed(1))[:40]
    pos = certified_radius(model, X[idx], norm="hamming", method="positional")
    assert bool((pos <= exact_hamming_radius(model, X[idx])).all()) and (pos >= 1).any()
    # every margin bound over S_r below the true minimum over all 4^6 sequences within r
    pooled = _pooled_cnn(2)
    from probe.certify.base import compute_bounds, get_bound_method
    from probe.certify.graph import build_graph
    from probe.certify.hamming import _margin_spec

    with torch.no_grad():
        logits = pooled(X)
    label = logits.argmax(1)
    margins = logits[:, None, :] - logits[:, :, None]                          # margins[m, y, j] = z_j - z_y
    graph = build_graph(pooled, X[:2])
    D = _distances(z)
    for r in (1, 2):
        s = hamming_set(X[idx], r)
        spec = _margin_spec(label[idx], 2).to(X.dtype)
        lo, hi = compute_bounds(graph, s, get_bound_method("positional"), spec)
        for row, i in enumerate(idx.tolist()):
            near = (D[i] <= r).nonzero().flatten()
            y, j = int(label[i]), 1 - int(label[i])
            true = -margins[near, y, j]                                          # z_y - z_j over the ball
            assert lo[row, 0] <= true.min() + 1e-9 and hi[row, 0] >= true.max() - 1e-9
    torch.manual_seed(4)
    mlp = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2)).double()
    bits = torch.randint(0, 2, (30, 10)).double()
    for method in ("positional", "crown"):
        r = certified_radius(mlp, bits, norm="hamming", space=probe.Bits(), method=method)
        assert bool((r <= exact_hamming_radius(mlp, bits, space=probe.Bits())).all())


def test_mask_keeps_positions_fixed():
    X = torch.randint(0, 2, (12, 8)).double()
    w = torch.zeros(8)
    w[:2] = 1.0
    model = nn.Linear(8, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.stack([-w, w]).double())
        model.bias.copy_(torch.tensor([0.5, -0.5]))
    mask = torch.zeros(8, dtype=torch.bool)
    mask[:2] = True                                       # the only bits that matter may not change
    cr = certified_radius(model, X, norm="hamming", space=probe.Bits(mask=mask))
    assert (cr == 6).all()                                # every flip of the 6 others is harmless
    assert torch.equal(cr, exact_hamming_radius(model, X, space=probe.Bits(mask=mask)))


def test_masked_features_keep_their_values():
    # a masked real-valued feature (0.3) beside six bits: rounding it to a bit would move the decision
    X = torch.cat([torch.randint(0, 2, (20, 6)).double(), torch.full((20, 1), 0.3, dtype=torch.float64)], 1)
    model = nn.Linear(7, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0] * 6 + [-10.0], [1.0] * 6 + [0.0]], dtype=torch.float64))
        model.bias.copy_(torch.tensor([0.5, 0.0], dtype=torch.float64))       # class 1 iff #bits > 3.5 - 10 x_6
    space = probe.Bits(mask=torch.tensor([False] * 6 + [True]))
    exact = exact_hamming_radius(model, X, space=space)
    assert torch.equal(exact, torch.full((20,), 6))                           # with x_6 = 0.3 no flips change it
    assert torch.equal(certified_radius(model, X, norm="hamming", space=space, method="positional"), exact)
    cert = SubstitutionSmoothing(model, keep=0.8, space=space, n=300).certify(X)
    assert (cert.label == 1).all() and (cert.counts[:, 0] == 0).all()


def test_bits_space_meets_the_space_contract():
    from probe.testing import check_space

    x0 = torch.randint(0, 2, (5, 9)).double()
    check_space(probe.Bits(), x0)
    mask = torch.zeros(9, dtype=torch.bool)
    mask[0] = True
    x0[:, 0] = 0.37                                    # a masked feature may hold any value
    check_space(probe.Bits(mask=mask), x0)
    assert probe.Bits().distance(x0, 1 - x0).tolist() == [9.0] * 5


def test_hamming_inputs_are_checked():
    with pytest.raises(ProbeError, match="one-hot"):
        certified_radius(nn.Linear(8, 2), torch.rand(2, 4, 2), norm="hamming")
    with pytest.raises(ProbeError, match="0 or 1"):
        certified_radius(nn.Linear(8, 2), torch.rand(2, 8), norm="hamming", space=probe.Bits())
    with pytest.raises(ProbeError, match="keep="):
        certified_radius(nn.Linear(8, 2), torch.ones(2, 8), norm="hamming", space=probe.Bits(), method="smoothing")


def test_certified_radius_dispatches_to_smoothing_on_bits():
    torch.manual_seed(0)
    X = torch.randint(0, 2, (6, 12)).double()
    w = torch.ones(12, dtype=torch.float64)
    model = nn.Linear(12, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.stack([-w, w]))
        model.bias.zero_()
        model.bias.copy_(torch.tensor([6.5, -6.5]))  # class 1 when at least 7 bits are set
    r = certified_radius(model, X, norm="hamming", space=probe.Bits(), method="smoothing", keep=0.95, n=4000)
    exact = exact_hamming_radius(model, X, space=probe.Bits())
    assert r.dtype == torch.long and bool((r <= 12).all())
    # smoothing certifies the smoothed classifier; for this monotone vote it is below the base model's exact radius
    assert bool((r <= exact + 1).all())


# ---------------------------------------------------------------------------------------------------------------
# randomized ablation


def test_ablation_delta_matches_counting_subsets():
    P, k = 7, 3
    subsets = list(itertools.combinations(range(P), k))
    for r in range(P + 1):
        hit = sum(any(i < r for i in s) for s in subsets) / len(subsets)
        assert ablation_threshold(r, kept=k, positions=P) == pytest.approx(0.5 + hit, abs=1e-15)
    assert ablation_radius(0.5, kept=k, positions=P) == 0
    assert ablation_radius(0.99, kept=1, positions=100) == 48


def test_ablated_classifier_keeps_its_label_within_the_certified_radius(cnn6):
    model, z, X = cnn6
    k = 2
    subsets = list(itertools.combinations(range(6), k))
    votes = torch.zeros(len(z), 2, dtype=torch.long)      # exact counts over all C(6, 2) = 15 kept sets
    with torch.no_grad():
        for s in subsets:
            ablated = torch.full_like(z, -1)
            ablated[:, list(s)] = z[:, list(s)]
            pred = model(encode_batch(DNA6, ablated, torch.float64)).argmax(1)
            votes += nn.functional.one_hot(pred, 2)
    top, label = votes.max(1)
    radius = torch.tensor([ablation_radius(Fraction(int(c), len(subsets)), kept=k, positions=6) for c in top])
    assert (radius >= 1).sum() > 50
    D = _distances(z)
    for i in (radius >= 1).nonzero().flatten().tolist():
        near = (D[i] <= radius[i]).nonzero().flatten()
        assert bool((2 * votes[near, label[i]] > len(subsets)).all()), f"sequence {i}: label changes within radius"
    idx = torch.arange(0, 4096, 257)
    cert = RandomizedAblation(model, kept=k, n=4000).certify(X[idx])
    ok = cert.label >= 0
    assert torch.equal(cert.label[ok], label[idx][ok]) and bool((cert.radius <= radius[idx]).all())


# ---------------------------------------------------------------------------------------------------------------
# code distance


def test_code_distance_by_hand_and_against_brute_force():
    X = torch.tensor([[0., 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]])
    cd = code_distance(X, [0, 0, 1, 1])
    assert cd.distance == 2 and set(cd.pair) in ({0, 3}, {1, 3}) and cd.ceiling == 0
    assert cd.nearest.tolist() == [2, 3, 3, 2]
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 4, (40, 9), generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    X = encode_batch(SymbolEncoding("onehot", 1, 4, (4, 9)), codes, torch.float32)
    brute = min(int((codes[i] != codes[j]).sum()) for i in range(40) for j in range(40) if y[i] != y[j])
    cd = code_distance(X, y, batch_size=7)
    assert cd.distance == brute and int(cd) == brute and cd.ceiling == (brute - 1) // 2
    assert code_distance(X, torch.zeros(40)).distance == -1

"""Late-fusion certificates: closed forms on a two-branch linear model, the unbounded-modality cases,
the softmax vertex rule, and soundness by sampling and attacks on every modality."""

import itertools
import math

import pytest
import torch
from torch import nn

import probe
from probe import ProbeError
from probe.certify import certify_fusion, fusion_radius, softmax_gap_lower
from probe.multimodal import LateFusion, fix_inputs

DUAL = {"linf": 1, "l2": 2}


def _linear(n_in, k, seed):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(n_in, k).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, n_in, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64))
    return lin


def _two_linear(rule="sum"):
    a, b = _linear(4, 3, 0), _linear(2, 3, 1)
    g = torch.Generator().manual_seed(2)
    xs = {"a": torch.randn(8, 4, generator=g, dtype=torch.float64),
          "b": torch.randn(8, 2, generator=g, dtype=torch.float64)}
    return LateFusion({"a": a, "b": b}, rule=rule), a, b, xs


def _closed_form(fused, a, b, xs, eps_a, eps_b, norm):
    """min_j (z_y - z_j) - eps_a ||W_a^T (e_y - e_j)||_q - eps_b ||W_b^T (e_y - e_j)||_q for z = z_a + z_b."""
    with torch.no_grad():
        z = fused(xs["a"], xs["b"])
    y = z.argmax(1)
    q = DUAL[norm]
    out = []
    a, b = a.weight.detach(), b.weight.detach()
    for i in range(len(y)):
        vals = []
        for j in range(3):
            if j == y[i]:
                continue
            da, db = a[y[i]] - a[j], b[y[i]] - b[j]
            vals.append(float(z[i, y[i]] - z[i, j] - eps_a * da.norm(p=q) - eps_b * db.norm(p=q)))
        out.append(min(vals))
    return torch.tensor(out, dtype=torch.float64), z, y


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_two_branch_linear_model_matches_its_closed_form(norm):
    fused, a, b, xs = _two_linear()
    cert = certify_fusion(fused, xs, {"a": 0.2}, norm=norm)
    want, z, y = _closed_form(fused, a, b, xs, 0.2, 0.0, norm)
    assert torch.allclose(cert.margin, want, atol=1e-10)
    assert torch.equal(cert.certified, want > 0)
    joint = certify_fusion(fused, xs, {"a": 0.2, "b": 0.1}, norm=norm)
    assert torch.allclose(joint.margin, _closed_form(fused, a, b, xs, 0.2, 0.1, norm)[0], atol=1e-10)
    # single-source radius: min_j margin_j / ||W_a^T (e_y - e_j)||_q, found by bisection (rounded down)
    wa = a.weight.detach()
    exact = torch.tensor([min(float((z[i, y[i]] - z[i, j]) / (wa[y[i]] - wa[j]).norm(p=DUAL[norm]))
                              for j in range(3) if j != y[i]) for i in range(len(y))], dtype=torch.float64)
    r = fusion_radius(fused, xs, "a", norm=norm, steps=30)
    assert (r <= exact + 1e-12).all() and (r >= exact * (1 - 1e-6)).all()
    # the minimal perturbation of modality a alone, through fix_inputs, reaches the closed form
    if norm == "l2":
        fx = fix_inputs(fused, xs, modality="a")
        res = probe.minimal_perturbation(fx.model, fx.x, norm="l2", space=fx.space())
        assert torch.allclose(res.distance, exact, rtol=1e-3)
        assert torch.equal(fx.part(res.x_adv, "b"), xs["b"])  # the frozen modality never moved


def test_mean_of_logits_scales_the_sum():
    fused, a, b, xs = _two_linear("mean")
    cert = certify_fusion(fused, xs, {"b": 0.3}, norm="l2")
    want, _, _ = _closed_form(LateFusion({"a": a, "b": b}, rule="sum"), a, b, xs, 0.0, 0.3, "l2")
    assert torch.allclose(cert.margin, want / 2, atol=1e-10)


def test_an_unbounded_modality_breaks_a_sum_of_logits_unless_it_has_a_domain():
    fused, a, b, xs = _two_linear()
    free = certify_fusion(fused, xs, unbounded="b")
    assert not free.certified.any() and torch.isinf(free.margin).all()
    lo, hi = torch.full((2,), -1.0, dtype=torch.float64), torch.full((2,), 1.0, dtype=torch.float64)
    boxed = certify_fusion(fused, xs, unbounded="b", domain={"b": (lo, hi)})
    # the worst b over the box [-1, 1]^2: margin of a at the clean point, plus min of (w_y - w_j) . x_b + bias gap
    with torch.no_grad():
        za, zb0 = a(xs["a"]), b(torch.zeros(1, 2, dtype=torch.float64))
        y = (za + b(xs["b"])).argmax(1)
    wb = b.weight.detach()
    want = []
    for i in range(8):
        want.append(min(float(za[i, y[i]] - za[i, j] + zb0[0, y[i]] - zb0[0, j]
                              - (wb[y[i]] - wb[j]).abs().sum()) for j in range(3) if j != y[i]))
    assert torch.allclose(boxed.margin, torch.tensor(want, dtype=torch.float64), atol=1e-10)


def test_averaged_probabilities_with_an_unbounded_modality_out_voted_by_the_others():
    # three branches; the third is fully adversarial: certified iff w1 gap1 + w2 gap2 > w3 (its worst is -1)
    fused, a, b, xs = _two_linear()
    c = _linear(3, 3, 5)
    xs = {**xs, "c": torch.randn(8, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)}
    with torch.no_grad():
        a.weight.mul_(4)
        b.weight.mul_(4)
    w = [0.45, 0.45, 0.1]
    model = LateFusion({"a": a, "b": b, "c": c}, rule="probabilities", weights=w)
    cert = certify_fusion(model, xs, unbounded="c", labels=None)
    with torch.no_grad():
        pa, pb = torch.softmax(a(xs["a"]), 1), torch.softmax(b(xs["b"]), 1)
        y = model(*xs.values()).argmax(1)
    gap = w[0] * (pa[torch.arange(8), y, None] - pa) + w[1] * (pb[torch.arange(8), y, None] - pb) - w[2]
    gap[torch.arange(8), y] = math.inf
    assert torch.allclose(cert.margin, gap.amin(1), atol=1e-12)
    assert cert.certified.any() and not cert.certified.all()
    # the bound is approached: c driven to a one-hot vote for the rival that is closest
    with torch.no_grad():
        for i in torch.nonzero(cert.certified).flatten():
            j = int(gap[i].argmin())
            direction = torch.linalg.lstsq(c.weight, (torch.eye(3, dtype=torch.float64)[j] * 50 - c.bias)[:, None]
                                           ).solution.flatten()
            p = model(xs["a"][i:i + 1], xs["b"][i:i + 1], direction[None])
            fused_gap = float(p[0, y[i]] - p[0, j])
            assert cert.margin[i] <= fused_gap + 1e-12 <= cert.margin[i] + 1e-6


def test_majority_vote_closed_forms():
    # three branches that vote y for sure (weights scaled so the margins are large), then unbounded ones
    branches = {str(i): _linear(2, 3, 20 + i) for i in range(3)}
    x = torch.zeros(1, 2, dtype=torch.float64)
    with torch.no_grad():
        for lin in branches.values():
            lin.weight.zero_()
            lin.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    xs = {k: x for k in branches}
    model = LateFusion(branches, rule="vote")
    assert certify_fusion(model, xs, unbounded="0").certified.all()              # 2 sure votes against 1
    two = certify_fusion(model, xs, unbounded=["0", "1"])                         # 1 sure vote against 2
    assert not two.certified.any() and float(two.margin) == -1.0
    # a tie goes to the lowest class index: y = 0 wins ties, so with 4 branches 2 against 2 is still certified
    four = LateFusion({**branches, "3": _linear(2, 3, 30)}, rule="vote")
    with torch.no_grad():
        four.branches["3"].weight.zero_()
        four.branches["3"].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    cert = certify_fusion(four, {**xs, "3": x}, unbounded=["0", "1"])
    assert cert.certified.all() and float(cert.margin) == 0.0


def test_softmax_gap_lower_is_the_minimum_over_the_vertices():
    g = torch.Generator().manual_seed(0)
    k = 4
    lo = torch.randn(6, k, generator=g, dtype=torch.float64)
    hi = lo + 2 * torch.rand(6, k, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (6,), generator=g)
    bound = softmax_gap_lower(lo, hi, y)
    for i in range(6):
        for j in range(k):
            if j == y[i]:
                continue
            best = math.inf
            for corner in itertools.product([0, 1], repeat=k):
                z = torch.where(torch.tensor(corner, dtype=torch.bool), hi[i], lo[i])
                p = torch.softmax(z, 0)
                best = min(best, float(p[y[i]] - p[j]))
            assert abs(float(bound[i, j]) - best) < 1e-12
            z = lo[i] + (hi[i] - lo[i]) * torch.rand(500, k, generator=g, dtype=torch.float64)
            p = torch.softmax(z, 1)
            assert (p[:, y[i]] - p[:, j] >= bound[i, j] - 1e-12).all()


def _mlp(n_in, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 8), nn.ReLU(), nn.Linear(8, 3)).double()


@pytest.mark.parametrize("rule", ["sum", "probabilities", "vote"])
def test_soundness_by_sampling_and_attacks_on_every_modality(rule):
    model = LateFusion({"a": _mlp(3, 0), "b": _mlp(2, 1), "c": _mlp(2, 2)}, rule=rule)
    g = torch.Generator().manual_seed(4)
    xs = {"a": torch.randn(10, 3, generator=g, dtype=torch.float64),
          "b": torch.randn(10, 2, generator=g, dtype=torch.float64),
          "c": torch.randn(10, 2, generator=g, dtype=torch.float64)}
    eps = 0.3
    attacker = model if rule != "vote" else LateFusion(dict(model.branches), rule="mean")
    for name in xs:
        cert = certify_fusion(model, xs, {name: eps})
        y = cert.labels
        # sampling: the fused margin never falls below the certified one, and certified decisions never change
        d = eps * (2 * torch.rand(200, *xs[name].shape, generator=g, dtype=torch.float64) - 1)
        with torch.no_grad():
            for t in range(200):
                moved = {**xs, name: xs[name] + d[t]}
                out = model(*moved.values())
                if rule != "vote":
                    gap = out[torch.arange(10), y, None] - out
                    gap[torch.arange(10), y] = math.inf
                    assert (gap.amin(1) >= cert.margin - 1e-9).all()
                assert (out.argmax(1)[cert.certified] == y[cert.certified]).all()
        # attacks: PGD on this modality alone never flips a certified decision
        fx = fix_inputs(model, xs, modality=name)
        fa = fix_inputs(attacker, xs, modality=name)
        res = probe.attacks.PGD(eps=eps, steps=30, restarts=2)(fa.model, fa.x, probe.Misclassify(y), space=fa.space(),
                                                                 already_satisfied="keep")
        with torch.no_grad():
            flipped = fx.model(res.x_adv).argmax(1) != y
        assert not (flipped & cert.certified).any()


def test_certify_fusion_names_bad_arguments():
    fused, _, _, xs = _two_linear()
    with pytest.raises(ProbeError, match="'z'"):
        certify_fusion(fused, xs, {"z": 0.1})
    with pytest.raises(ProbeError, match="both"):
        certify_fusion(fused, xs, {"a": 0.1}, unbounded="a")
    with pytest.raises(ProbeError, match="LateFusion"):
        certify_fusion(nn.Linear(2, 2), xs, 0.1)

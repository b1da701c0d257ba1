"""Multi-input models: fix_inputs packs the modalities so that attacks, minimal perturbations,
sensitivity maps and certificates act on the chosen ones; the per-modality report."""

import pytest
import torch
from torch import nn

import probe
from probe import ProbeError
from probe.multimodal import LateFusion, fix_inputs


class Bilinear(nn.Module):
    """A model that is not late fusion: the track gates the sequence's score."""

    def __init__(self):
        super().__init__()
        self.seq = nn.Conv1d(4, 2, 3)
        self.track = nn.Linear(6, 2)

    def forward(self, seq, track):
        return self.seq(seq).mean(2) + self.track(track.flatten(1))


def _inputs(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"seq": torch.rand(n, 4, 8, generator=g), "track": torch.rand(n, 2, 3, generator=g)}


def test_packing_round_trips_and_leaves_the_inputs_alone():
    torch.manual_seed(0)
    model, xs = Bilinear(), _inputs()
    before = {k: v.clone() for k, v in xs.items()}
    fx = fix_inputs(model, xs, modality="track")
    assert fx.x.shape == (5, 4 * 8 + 6)
    assert torch.equal(fx.part(fx.x), xs["track"]) and torch.equal(fx.part(fx.x, "seq"), xs["seq"])
    with torch.no_grad():
        assert torch.allclose(fx.model(fx.x), model(xs["seq"], xs["track"]))
    assert all(torch.equal(before[k], xs[k]) for k in xs)
    assert fx.mask().sum() == 32 and not fx.mask()[32:].any()


def test_attacks_move_only_the_chosen_modality_and_joint_budgets_share_the_norm():
    torch.manual_seed(1)
    model, xs = Bilinear(), _inputs()
    fx = fix_inputs(model, xs, modality="track")
    res = probe.attacks.PGD(eps=0.5, norm="l2", steps=20)(fx.model, fx.x, space=fx.space())
    assert torch.equal(fx.part(res.x_adv, "seq"), xs["seq"])
    assert (fx.part(res.delta).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    joint = fix_inputs(model, xs, modality=("seq", "track"))
    res = probe.attacks.PGD(eps=0.5, norm="l2", steps=20)(joint.model, joint.x, space=joint.space())
    assert (res.delta.norm(dim=1) <= 0.5 + 1e-5).all()
    assert res.delta[:, :32].abs().sum() > 0 and res.delta[:, 32:].abs().sum() > 0
    # a valid range per modality: counts stay non-negative
    lo = fix_inputs(model, xs, modality="track").space({"track": 0.0})
    res = probe.attacks.PGD(eps=2.0, steps=10)(fx.model, fx.x, space=lo)
    assert (fx.part(res.x_adv) >= 0).all()


def test_sensitivity_and_certificates_on_one_modality():
    torch.manual_seed(2)
    model, xs = Bilinear(), _inputs()
    fx = fix_inputs(model, xs, modality="track")
    att = probe.sensitivity(fx.model, fx.x, method="gradient", target=0)
    track = xs["track"].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xs["seq"], track)[:, 0].sum(), track)
    assert torch.allclose(fx.part(att), g, atol=1e-6)
    cert = probe.certify.bound_outputs(fx.model, fx.x, fx.eps(0.1))
    # the track enters linearly: the bound is exact, z -+ 0.1 ||w_k||_1
    with torch.no_grad():
        z = fx.model(fx.x)
    r = 0.1 * model.track.weight.detach().abs().sum(1)
    assert torch.allclose(cert.lower, z - r, atol=1e-5) and torch.allclose(cert.upper, z + r, atol=1e-5)
    joint = fix_inputs(model, xs, modality=("seq", "track"))
    both = probe.certify.bound_outputs(joint.model, joint.x, joint.eps({"seq": 0.05, "track": 0.1}))
    assert (both.lower <= cert.lower + 1e-6).all()


def test_fix_inputs_names_what_is_wrong():
    model, xs = Bilinear(), _inputs()
    with pytest.raises(ProbeError, match="'image'"):
        fix_inputs(model, xs, modality="image")
    with pytest.raises(ProbeError, match="rows"):
        fix_inputs(model, {"seq": xs["seq"], "track": xs["track"][:2]}, modality="seq")
    fx = fix_inputs(model, xs, modality="seq")
    with pytest.raises(ProbeError, match="not chosen"):
        fx.eps({"track": 0.1})
    with pytest.raises(ProbeError, match="rule"):
        LateFusion([nn.Linear(2, 2)], rule="max")


def test_modality_report_finds_the_modality_that_carries_the_signal():
    # the label is the sign of the first feature of "strong"; "weak" carries a little signal
    g = torch.Generator().manual_seed(0)
    n = 400
    strong, weak = torch.randn(n, 3, generator=g).clamp(-3, 3), torch.randn(n, 3, generator=g).clamp(-3, 3)
    y = (strong[:, 0] + 0.2 * weak[:, 0] > 0).long()
    torch.manual_seed(0)
    model = LateFusion({"strong": nn.Linear(3, 2), "weak": nn.Linear(3, 2)}, rule="sum")
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(strong, weak), y).backward()
        opt.step()
    xs = {"strong": strong[:60], "weak": weak[:60]}
    box = (torch.full((3,), -3.0), torch.full((3,), 3.0))
    rep = probe.modality_report(model, xs, eps=0.3, domain={"strong": box, "weak": box}, steps=20)
    f = rep.to_frame()
    assert rep.leans_on == "strong"
    # a linear model: the bounds are exact and PGD finds every flip, so the two fractions add up to one
    assert ((f["attack_success"] + f["certified"] - 1).abs() < 1e-6).all()
    assert f.loc["weak", "certified_unbounded"] > f.loc["strong", "certified_unbounded"]
    assert f.loc["weak", "median_radius"] > f.loc["strong", "median_radius"]

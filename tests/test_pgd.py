import pytest
import torch

import probe
from probe.attacks import PGD
from probe.testing import AffineClassifier, affine_margin


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_pgd_succeeds_above_and_fails_below_exact_margin(norm, device):
    model = AffineClassifier.random(n_features=8, n_classes=3, seed=1).to(device)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0)).to(device)
    margin = affine_margin(model, x, norm)
    below = PGD(eps=margin * 0.98, norm=norm, steps=50)(model, x)
    assert not below.success.any()
    # the margin loss is a max of linear functions: each class has its own local maximum on the
    # sphere, so a few restarts are needed to find the nearest boundary from random starts
    steps = 200 if norm == "l1" else 100
    above = PGD(eps=margin * 1.05, norm=norm, steps=steps, restarts=5)(model, x)
    assert above.success.float().mean() >= 0.95
    assert (above.distance[above.success] <= margin[above.success] * 1.05 + 1e-5).all()


def test_pgd_respects_box_and_mask(device):
    model = AffineClassifier.random(n_features=6, n_classes=2, seed=3).to(device)
    x = torch.rand(16, 6).to(device)
    mask = torch.tensor([True, False, False, False, False, True])
    space = probe.Box(0.0, 1.0, mask=mask)
    res = PGD(eps=0.3, norm="linf", steps=20)(model, x, space=space)
    assert (res.x_adv >= 0).all() and (res.x_adv <= 1).all()
    assert res.x_adv.device == x.device
    assert (res.delta[:, mask.to(device)] == 0).all()
    assert (res.delta.abs().amax(1) <= 0.3 + 1e-6).all()


def test_pgd_invariants_batch_size_inputs_and_model_state(device):
    model = AffineClassifier.random(n_features=5, n_classes=4, seed=2).to(device)
    model.train()
    model.linear.weight.requires_grad_(True)
    model.linear.bias.requires_grad_(False)
    x = torch.randn(20, 5).to(device)
    x_copy = x.clone()
    a = PGD(eps=0.5, norm="l2", steps=10, restarts=2)(model, x, batch_size=3)
    b = PGD(eps=0.5, norm="l2", steps=10, restarts=2)(model, x, batch_size=None)
    assert torch.equal(x, x_copy)
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)
    assert torch.equal(a.success, b.success) and torch.equal(a.queries, b.queries)
    assert model.training
    assert model.linear.weight.requires_grad and not model.linear.bias.requires_grad
    assert model.linear.weight.grad is None


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_pgd_rejects_bad_eps(bad):
    model = AffineClassifier.random()
    with pytest.raises(probe.ProbeError, match="eps"):
        PGD(eps=bad)(model, torch.randn(2, 10))


def test_bad_inputs_raise_probe_error():
    model = AffineClassifier.random()
    x = torch.randn(3, 10)
    x[1, 4] = float("nan")
    with pytest.raises(probe.ProbeError, match=r"\(1, 4\)"):
        PGD(eps=0.1)(model, x)
    with pytest.raises(probe.ProbeError, match="shape"):
        PGD(eps=0.1)(model, torch.randn(3, 7))
    with pytest.raises(probe.ProbeError, match="already holds"):
        labels = torch.tensor([0, 1, 2])
        z = model(torch.zeros(3, 10))
        wrong = (z.argmax(1) + 1) % 3
        PGD(eps=0.1)(model, torch.zeros(3, 10), probe.Misclassify(wrong))
    with pytest.raises(probe.ProbeError, match="batch dimension"):
        PGD(eps=0.1)(lambda t: t.sum(), torch.randn(3, 10))
    del labels


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()


def test_pgd_step_loop_does_not_wait_for_the_device(device):
    from probe.testing import count_host_syncs

    model = _mlp().to(device)
    x = torch.randn(24, 8, generator=torch.Generator().manual_seed(0)).to(device)

    def syncs(attack):
        attack(model, x, batch_size=None)  # warm-up
        with count_host_syncs(device) as counter:
            attack(model, x, batch_size=None)
        return counter.count

    # eps too small to flip anything: every input runs every step, and the loop checks on the host
    # once every check_every = 10 steps (20 more steps: 2 more syncs), or never when the checks are spaced out
    assert syncs(PGD(eps=1e-4, steps=30)) - syncs(PGD(eps=1e-4, steps=10)) == 2
    sparse = [PGD(eps=1e-4, steps=k) for k in (10, 30)]
    for attack in sparse:
        attack.check_every = 1000
    assert syncs(sparse[1]) - syncs(sparse[0]) == 0
    # one check between two restarts
    assert syncs(PGD(eps=1e-4, steps=10, restarts=2)) - syncs(PGD(eps=1e-4, steps=10)) == 1


def test_pgd_queries_are_per_input_and_do_not_depend_on_batch_size(device):
    model = _mlp().to(device)
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(1)).to(device)
    # no input can flip inside eps = 1e-4: each is evaluated at every step and once after the last,
    # per restart
    none = PGD(eps=1e-4, steps=7, restarts=2)(model, x, batch_size=4)
    assert not none.success.any() and (none.queries == 2 * (7 + 1)).all()
    # a budget at which inputs succeed at different steps: an input's count is its own
    attack = PGD(eps=0.4, steps=25, restarts=2)
    runs = [attack(model, x, batch_size=b) for b in (None, 7, 1)]
    q = runs[0].queries
    assert 0.2 < runs[0].success.float().mean() < 1 and len(q.unique()) > 3
    for r in runs[1:]:
        assert torch.equal(r.queries, q) and torch.equal(r.success, runs[0].success)
        torch.testing.assert_close(r.x_adv, runs[0].x_adv, atol=1e-6, rtol=0)
    assert (q[~runs[0].success] == 2 * 26).all() and (q[runs[0].success] <= 2 * 26).all()
    # check_every changes when the host looks, never the result
    spaced = PGD(eps=0.4, steps=25, restarts=2)
    spaced.check_every = 3
    other = spaced(model, x, batch_size=None)
    assert torch.equal(other.queries, q) and torch.equal(other.success, runs[0].success)
    torch.testing.assert_close(other.x_adv, runs[0].x_adv, atol=1e-6, rtol=0)

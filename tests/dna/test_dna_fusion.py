"""The sequence + control-track model: the track's certificate has a closed form (the head is linear in it)."""

import torch

from domains.dna.fusion import control_track, sequence_track_model
from probe.certify import certify_fusion


def test_control_track_rates_follow_the_labels():
    y = torch.tensor([0] * 200 + [1] * 200 + [2] * 200)
    T = control_track(y, 50, depth=2.0, signal=0.3, seed=0)
    assert T.shape == (600, 2, 50) and (T >= 0).all() and torch.equal(T, T.round())
    means = [float(T[y == k].mean()) for k in range(3)]
    assert abs(means[0] - 2.0) < 0.05 and abs(means[1] - 2.6) < 0.05 and abs(means[2] - 1.4) < 0.05


def test_track_certificate_is_the_closed_form_of_a_linear_head():
    model = sequence_track_model(3, channels=4, kernel=5).double()
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.one_hot(torch.randint(0, 4, (6, 30), generator=g), 4).permute(0, 2, 1).double()
    T = control_track(torch.zeros(6), 30, seed=1).double()
    eps = 0.5
    cert = certify_fusion(model, {"sequence": X, "control": T}, {"control": eps})
    with torch.no_grad():
        z = model(X, T)
    W = model.branches["control"].linear.weight.detach()
    y = z.argmax(1)
    # L-inf eps on every position moves each strand's mean by at most eps: margin - eps ||w_y - w_j||_1
    want = torch.stack([min(z[i, y[i]] - z[i, j] - eps * (W[y[i]] - W[j]).abs().sum() for j in range(3)
                            if j != y[i]) for i in range(6)])
    assert torch.allclose(cert.margin, want, atol=1e-9)
    # fully adversarial within [0, c]: the mean takes any value in [0, c]
    c = 5.0
    free = certify_fusion(model, {"sequence": X, "control": T}, unbounded="control", domain={"control": (0.0, c)})
    mean = T.mean(2)
    want = []
    for i in range(6):
        vals = []
        for j in range(3):
            if j == y[i]:
                continue
            d = W[y[i]] - W[j]
            corner = torch.where(d > 0, torch.zeros(2, dtype=d.dtype), torch.full((2,), c, dtype=d.dtype))
            worst = (corner - mean[i]) @ d
            vals.append(z[i, y[i]] - z[i, j] + worst)
        want.append(min(vals))
    assert torch.allclose(free.margin, torch.stack(want), atol=1e-9)

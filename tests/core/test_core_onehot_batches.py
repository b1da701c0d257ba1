"""A per-input OneHot mask follows its inputs through batching."""

import torch

import probe
from probe.attacks import EditSearch


class _CountC(torch.nn.Module):
    """Binary logit that grows with the number of C's: flipping needs C's written somewhere."""

    def forward(self, x):
        return (x[:, 1].sum(1, keepdim=True) - 2.5)


def test_per_input_mask_is_respected_in_every_batch():
    g = torch.Generator().manual_seed(0)
    n, length = 6, 8
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=g) * 0, 4).movedim(-1, 1).float()
    mask = torch.zeros(n, length, dtype=torch.bool)
    for i in range(n):
        mask[i, :i] = True                 # input i may not change its first i positions
    space = probe.OneHot(mask=mask)
    crit = probe.Threshold(0.0, direction="up")
    full = EditSearch(max_edits=5, guide="ism")(_CountC(), x, crit, space=space, batch_size=None)
    small = EditSearch(max_edits=5, guide="ism")(_CountC(), x, crit, space=space, batch_size=2)
    assert torch.equal(full.x_adv, small.x_adv)
    changed = (small.x_adv != x).any(1)
    assert not (changed & mask).any()
    assert small.success.all() and (small.distance == 3).all()

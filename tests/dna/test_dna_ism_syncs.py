"""Saturation mutagenesis on the device: no host sync per batch of mutants, results independent of batching."""

import pytest
import torch
from torch import nn

from domains.dna import saturation_mutagenesis
from probe import ProbeError
from probe.testing import count_host_syncs


def _seqs(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=g), 4).permute(0, 2, 1).float()


def _model(length):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(4, 8, 7, padding=3), nn.ReLU(), nn.MaxPool1d(3),
                         nn.Conv1d(8, 8, 5, padding=2, dilation=2), nn.ReLU(), nn.AvgPool1d(2),
                         nn.Flatten(), nn.LazyLinear(2)).eval()


@pytest.mark.parametrize("fast", [True, False])
def test_syncs_do_not_grow_with_the_number_of_mutants(fast, device):
    X = _seqs(8, 40).to(device)
    X[3, :, 0] = 0  # an N at the edge: all four bases are edits there
    m = _model(40).to(device)
    m(X[:1])
    counts = []
    for n in (1, 3, 8):  # 120, 360 and 960 + 1 edits: 2, 6 and 16 batches of 64
        saturation_mutagenesis(m, X[:n], batch_size=64, fast=fast)  # warm-up
        with count_host_syncs(device) as counter:
            saturation_mutagenesis(m, X[:n], batch_size=64, fast=fast)
        counts.append(counter.count)
    # a constant per call (the input checks, the edit list and its host copy, the fast path's one check), none
    # per batch
    assert counts[0] == counts[1] == counts[2], counts
    assert counts[0] <= 13, counts


def test_results_do_not_depend_on_batching_on_the_device(device):
    X = _seqs(3, 33).to(device)
    X[1, :, 32] = 0
    m = _model(33).to(device)
    m(X[:1])
    ref = saturation_mutagenesis(m, X, batch_size=10_000, fast=False)
    for bs in (1, 7, 64):
        torch.testing.assert_close(saturation_mutagenesis(m, X, batch_size=bs), ref, atol=1e-5, rtol=0)
    assert ref.device == X.device and ref.shape == (3, 4, 33, 2)


def test_non_finite_mutant_output_names_record_base_and_position():
    X = _seqs(2, 12)
    X[:, :, 5] = 0
    X[:, 0, 5] = 1  # an A at position 5 of both sequences

    def model(x):
        # finite on the sequences themselves, NaN on the mutants that write a G at position 5
        return torch.where(x[:, 2, 5] == 1, torch.nan, x.sum((1, 2)))[:, None]

    with pytest.raises(ProbeError, match=r"non-finite output on sequence 0 with base G at position 5"):
        saturation_mutagenesis(model, X, batch_size=5)

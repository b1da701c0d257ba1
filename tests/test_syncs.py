"""The host-sync counter: known syncs are counted, pure device work is not, patches do not outlive the block."""

import warnings

import pytest
import torch

import probe
from probe.testing import HostSyncCounter, count_host_syncs


def test_known_syncs_are_counted_one_each(device):
    x = torch.arange(8.0, device=device)
    mask = x > 3
    syncs = [
        lambda: x.sum().item(),
        lambda: bool(mask.any()),
        lambda: float(x[2]),
        lambda: x.nonzero(),
        lambda: torch.nonzero(mask),
        lambda: x[mask],
        lambda: x.unique(),
        lambda: x.cpu(),
        lambda: x.tolist(),
        lambda: torch.masked_select(x, mask),
        lambda: torch.where(mask),
        lambda: x.repeat_interleave(torch.arange(8, device=device) % 2),
        lambda: torch.tensor([1.0, 2.0], device=device),  # a blocking copy from the host
    ]
    for i, fn in enumerate(syncs):
        with count_host_syncs(device) as counter:
            fn()
        assert counter.count >= 1, f"sync {i} was not counted"
        if counter.mode == "cpu-proxy":  # the proxy counts each such call exactly once
            assert counter.count == 1, (i, dict(counter.events))


def test_pure_device_work_is_not_counted(device):
    x = torch.randn(16, 5, device=device)
    idx = torch.tensor([3, 1, 4], device=device)
    w = torch.randn(5, 3, device=device)
    with count_host_syncs(device) as counter:
        y = torch.relu(x @ w).sum(1)
        y = torch.where(y > 0, y, torch.zeros_like(y))
        z = x[idx] + x[1:4]                    # integer and slice indexing
        z[torch.arange(3, device=device)] = 0  # index_put with long indices
        x2 = x.clone()
        x2[x2 > 0] = 0.0                        # a masked fill
        done = (y > 1).any()                    # the reduction alone: no bool
        y = y.masked_fill(done, 1.0)
        _ = x.to(device), len(x), x.shape[0], x.repeat_interleave(2, dim=0)
    assert counter.count == 0, dict(counter.sites)


def test_counts_nested_calls_once_and_sites_name_the_line():
    x = torch.arange(5.0)
    with count_host_syncs("cpu") as counter:
        x.unique()            # Tensor.unique calls torch.unique
        _ = f"{x.sum():.1f}"  # format calls item
    assert counter.count == 2, dict(counter.events)
    assert all("test_syncs.py:" in site for site in counter.sites)


def test_patches_are_removed_afterwards_even_on_error():
    originals = (torch.Tensor.__getitem__, torch.Tensor.item, torch.nonzero, torch.unique)
    with pytest.raises(RuntimeError, match="inside"), count_host_syncs("cpu"):
        raise RuntimeError("inside")
    assert (torch.Tensor.__getitem__, torch.Tensor.item, torch.nonzero, torch.unique) == originals
    assert "item" not in torch.Tensor.__dict__ and "__getitem__" not in torch.Tensor.__dict__
    x = torch.arange(3.0)
    with count_host_syncs("cpu") as outer:
        x[0].item()
        with count_host_syncs("cpu") as inner:
            x.nonzero()
        x.tolist()
    assert (outer.count, inner.count) == (3, 1)
    assert torch.Tensor.__getitem__ is originals[0]


def test_cuda_mode_needs_cuda():
    if torch.cuda.is_available():
        with count_host_syncs("cuda") as counter:
            torch.ones(2, device="cuda").sum().item()
        assert isinstance(counter, HostSyncCounter) and counter.mode == "cuda" and counter.count >= 1
    else:
        with pytest.raises(probe.ProbeError, match="CUDA is not available"), count_host_syncs("cuda"):
            pass


def test_cuda_mode_counts_the_debug_warnings_and_passes_the_others_on(monkeypatch):
    # CUDA's debug mode, played without a GPU: set_sync_debug_mode is recorded, the sync warning raised by hand
    modes = [0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: modes[-1])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def sync():
        warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)

    with pytest.warns(UserWarning, match="the code's own") as caught:
        with count_host_syncs("cuda") as outer:
            sync()
            with count_host_syncs("cuda") as inner:
                sync()
                sync()
                warnings.warn("the code's own warning", UserWarning, stacklevel=1)
            assert inner.count == 2 and modes[-1] == "warn"
    assert (outer.mode, outer.count, inner.count) == ("cuda", 3, 2)
    assert modes[-1] == 0  # the mode it found is restored
    assert [str(w.message) for w in caught] == ["the code's own warning"]
    assert all("test_syncs.py:" in site for site in outer.sites)

"""The Hamming sandwich on DNA: certified radius <= exact radius < edits the search needed, sequence by sequence."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from domains.dna import hamming_report, minimal_edits
from probe import Misclassify
from probe.certify import certified_radius
from probe.certify.hamming import SymbolEncoding
from probe.certify.substitution import encode_batch
from probe.testing import exact_hamming_radius

ENC = SymbolEncoding("onehot", 1, 4, (4, 8))


@pytest.fixture(scope="module")
def short_model():
    """A CNN on 8 bp that calls "at least three A or T" (trained on 3,000 random sequences), and 40 test ones."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 4, (3040, 8), generator=g)
    X = encode_batch(ENC, codes, torch.float32)
    y = (((codes == 0) | (codes == 3)).sum(1) >= 3).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), 3e-2)
    for _ in range(80):
        loss = nn.functional.cross_entropy(model(X[:3000]), y[:3000])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), X, y


def test_certified_exact_found_sandwich(short_model):
    model, X, y = short_model
    test = X[3000:]
    exact = exact_hamming_radius(model, test)                             # every sequence within r, all r
    found = minimal_edits(model, test, max_edits=8).n_edits
    assert torch.isfinite(found).all()
    assert bool((exact + 1 <= found).all())                               # the search never beats the exact minimum
    assert (exact >= 1).sum() >= 10
    for method in ("positional", "crown"):
        cert = certified_radius(model, test, norm="hamming", method=method)
        assert bool((cert <= exact).all()), method
    assert (certified_radius(model, test, norm="hamming", method="positional") >= 1).any()


def test_report_holds_the_sandwich_and_the_ceiling(short_model):
    model, X, y = short_model
    test, labels = X[3000:3016], model(X[3000:3016]).argmax(1)
    rep = hamming_report(model, test, labels=labels, reference=X[:3000], reference_labels=y[:3000], keep=0.9, n=2000,
                         methods=("positional", "crown"), exact_max=8)
    assert len(rep) == 16 and not rep.exact_is_lower_bound.all()
    for col in ("smoothed_radius", "certified_positional", "certified_crown"):
        assert (rep[col] >= 0).all()
    assert (rep.certified_positional <= rep.exact_radius).all() and (rep.certified_crown <= rep.exact_radius).all()
    assert (rep.exact_radius < rep.edits_found).all()
    codes, ref = X[3000:3016].argmax(1), X[:3000].argmax(1)
    allc, ally = torch.cat([codes, ref]), torch.cat([labels, y[:3000]])
    brute = [int(min((allc[j] != codes[i]).sum() for j in range(len(allc)) if ally[j] != labels[i]))
             for i in range(16)]
    assert rep.nearest_other.tolist() == brute and (rep.ceiling == np.floor((rep.nearest_other - 1) / 2)).all()
    assert rep.smoothed_label.isin([-1, 0, 1]).all()


def test_dna_command_summary_of_hamming_radii(short_model):
    import argparse

    from domains.dna.cli import _hamming, _hamming_summary

    model, X, y = short_model
    test = X[3000:3004]
    edits = minimal_edits(model, test, max_edits=4)
    args = argparse.Namespace(keep=0.9, quick=True, seed=0)
    ham = _hamming(model, test, None, (X[:3000], y[:3000]), edits, args)
    summary = json.loads(json.dumps(_hamming_summary(ham, 0.9)))
    assert summary["keep"] == 0.9 and len(summary["radii"]) == 4 and summary["median_ceiling"] is not None
    assert all(r["certified"] < r["edits_found"] for r in summary["radii"].values())

    class Opaque(nn.Module):  # bound propagation cannot read it: the report falls back to smoothing alone
        def forward(self, x):
            return model(x) + 0 * torch.sort(x, 2).values.sum((1, 2))[:, None]

    with pytest.warns(UserWarning, match="smoothing only"):
        ham = _hamming(Opaque(), test, None, None, edits, args)
    assert "certified_positional" not in ham and _hamming_summary(ham, 0.9)["median_certified_radius"] is None


def test_report_crosses_check_with_edit_search_labels(short_model):
    model, X, _ = short_model
    test = X[3000:3006]
    labels = model(test).argmax(1)
    edits = minimal_edits(model, test, Misclassify(labels), max_edits=8)
    rep = hamming_report(model, test, keep=0.9, n=500, edits=edits)
    assert np.array_equal(rep.edits_found.to_numpy(), edits.n_edits.numpy()) and rep.ceiling.isna().all()

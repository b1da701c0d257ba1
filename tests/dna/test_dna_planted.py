"""On generated promoters with known sites: attributions, minimal edits and motifs point at the planted sites.

A small CNN is trained once per session (a few seconds) on sequences with JASPAR sites planted
at known positions. For the held-out sequences it classifies correctly (promoters only: the
"no promoter" class has no site to find), the test reports and bounds:

- the fraction of the 5 top positions of each attribution map that lie inside planted sites;
- the fraction of minimal-edit substitutions (leave the predicted class) inside planted sites;
- the fraction of best seqlets whose best JASPAR match is a factor planted in that sequence.
"""

import numpy as np
import pytest
import torch

from domains import dna
from domains.dna.datasets import FACTORS, promoters
from probe import Misclassify
from probe.cli import main


@pytest.fixture(scope="session")
def trained():
    data = promoters(1500, 60, seed=0, sharpen=3)
    model = dna.fit(dna.small_cnn(3, channels=32), data.X[:1200], data.y[:1200], epochs=15, seed=0)
    test = data.subset(np.arange(1200, 1500))
    with torch.no_grad():
        pred = model(test.X).argmax(1)
    keep = np.nonzero((pred == test.y).numpy() & (test.labels < 2))[0]
    accuracy = float((pred == test.y).float().mean())
    return model, test, keep, accuracy


def test_model_learns_the_task(trained):
    _, _, keep, accuracy = trained
    assert accuracy > 0.7 and len(keep) > 80


@pytest.mark.parametrize("method", ["saliency", "gradient_x_input", "integrated_gradients", "ism"])
def test_top_attributions_fall_in_planted_sites(trained, method):
    model, test, keep, _ = trained
    X = test.X[keep]
    attr = dna.attribute(model, X, method=method)
    per_position = (attr.values * X).sum(1)  # the attribution of the observed base
    top = per_position.topk(5, dim=1).indices.numpy()
    mask = test.site_mask()[keep]
    frac = float(np.mean([mask[k][top[k]].mean() for k in range(len(keep))]))
    print(f"{method}: {frac:.3f} of the top-5 positions lie in planted sites ({mask.mean():.3f} of all positions)")
    assert frac > 0.75


def test_minimal_edits_fall_in_planted_sites(trained):
    model, test, keep, _ = trained
    X = test.X[keep]
    res = dna.minimal_edits(model, X, Misclassify(test.y[keep]), max_edits=8)
    mask = test.site_mask()[keep]
    inside = [mask[k][p] for k in range(len(keep)) for p, _, _ in res.edits[k]]
    frac = float(np.mean(inside))
    success = float(res.success.float().mean())
    median = float(res.n_edits[res.success].median())
    print(f"minimal edits: {frac:.3f} of {len(inside)} substitutions in planted sites, "
          f"success {success:.3f}, median {median} edits")
    assert res.success.float().mean() > 0.95
    assert frac > 0.8
    # the one-edit answers agree with the ISM table
    one = dna.minimal_edits(model, X[:20], Misclassify(test.y[keep[:20]]), max_edits=1)
    ism = dna.saturation_mutagenesis(model, X[:20])
    with torch.no_grad():
        z = model(X[:20])
    y = test.y[keep[:20]]
    zz = z[:, None, None, :] + ism  # logits of every mutant
    other = zz.scatter(3, y[:, None, None, None].expand(-1, 4, 60, 1), float("-inf")).amax(3)
    own = zz.gather(3, y[:, None, None, None].expand(-1, 4, 60, 1))[..., 0]
    assert torch.equal(one.success, (other > own).flatten(1).any(1))


def test_matched_motifs_are_the_planted_factors(trained):
    model, test, keep, _ = trained
    X = test.X[keep]
    attr = dna.attribute(model, X, method="gradient_x_input")
    found = dna.seqlets(attr, X, max_seqlets=1)
    matched = dna.match_motifs(X, found)
    planted = test.sites.groupby("sequence").factor.apply(set)
    hits = [m in planted[keep[s]] for s, m in zip(matched.sequence, matched.motif)]
    frac = float(np.mean(hits))
    print(f"best seqlet matches a planted factor in {frac:.3f} of {len(hits)} sequences")
    assert set(matched.motif.dropna()) <= set(FACTORS)  # a region with no positive-score hit has no motif
    assert {"position", "strand", "score", "relative_score"} <= set(matched.columns)
    assert frac > 0.7


def test_reverse_complement_symmetry_of_attributions(trained):
    model, test, keep, _ = trained
    X = test.X[keep[:10]]
    a = dna.saturation_mutagenesis(model, X, target=1)
    b = dna.saturation_mutagenesis(model, dna.reverse_complement(X), target=1)
    # the model was trained with reverse-complement augmentation: ISM maps agree roughly on strands
    corr = np.corrcoef(a.flatten().numpy(), dna.reverse_complement(b).flatten().numpy())[0, 1]
    assert corr > 0.5


def test_cli_and_plots(trained, tmp_path):
    import matplotlib.pyplot as plt

    model, test, keep, _ = trained
    X = test.X[keep[:2]]
    res = dna.minimal_edits(model, X, max_edits=4)
    ism = dna.saturation_mutagenesis(model, X)[..., 0]
    ax = res.plot(0, ism=ism)
    # the heat map is the ISM table, the dots the reference bases, one box per edit at (position, new base)
    (image,) = ax.images
    np.testing.assert_allclose(np.asarray(image.get_array()), ism[0].numpy())
    dots = ax.collections[0].get_offsets()
    ref_base, ref_pos = np.nonzero(X[0].numpy() == 1)
    assert sorted(map(tuple, np.asarray(dots).astype(int).tolist())) == sorted(zip(ref_pos.tolist(), ref_base.tolist()))
    boxes = sorted((int(b.get_x() + 0.5), int(b.get_y() + 0.5)) for b in ax.patches)
    assert len(res.edits[0]) >= 1 and boxes == sorted((p, "ACGT".index(alt)) for p, _, alt in res.edits[0])
    assert ax.get_title() == f"{res.names[0]}: {len(res.edits[0])} edit(s)"
    sites = test.sites[test.sites.sequence == keep[1]]
    logo = dna.plot_logo(dna.saliency(model, X), 1, edits=res.edits[1], sites=sites)
    # one red triangle per edit, at its position; one shaded span per planted site
    marks = [line for line in logo.lines if line.get_marker() == "^"]
    assert len(marks) >= 1 and sorted(int(m.get_xdata()[0]) for m in marks) == sorted(p for p, _, _ in res.edits[1])
    spans = [p for p in logo.patches if p.get_alpha() == 0.15]
    assert len(sites) >= 1 and len(spans) == len(sites)
    assert logo.get_xlabel() == "position (bp from the window start)" and logo.get_ylabel() == "attribution"
    plt.close("all")
    torch.jit.script(model).save(str(tmp_path / "m.pt"))
    fasta = tmp_path / "s.fa"
    fasta.write_text("".join(f">{n}\n{s}\n" for n, s in zip(test.sequences.names[:3], test.sequences.sequences[:3])))
    assert main(["dna", "--quick", "--model", str(tmp_path / "m.pt"), "--fasta", str(fasta), "--out",
                 str(tmp_path / "out")]) == 0
    import json

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sequences"] == 3 and "motifs" in summary
    assert main(["dna", "--quick", "--fasta", str(fasta), "--out", str(tmp_path / "bad")]) == 2
    assert main(["dna", "--quick", "--model", "domains.dna.models:small_cnn", "--fasta", str(fasta), "--out",
                 str(tmp_path / "factory")]) == 0
    assert main(["dna", "--quick", "--model", "no.such.module:f", "--fasta", str(fasta), "--out",
                 str(tmp_path / "bad2")]) == 2

"""TomTom and FIMO annotation: planted sites named by their own family with q < 0.05, p-values equal to
memelite's, q-values equal to scipy's Benjamini-Hochberg, no hit with a negative score."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from domains.dna.datasets import jaspar_db, planted_sites
from domains.dna.fimo import scan_motifs
from domains.dna.motif_db import jaspar_motifs, motif_set
from domains.dna.motifs import match_motifs
from domains.dna.tomtom import annotate_seqlets, benjamini_hochberg, seqlet_pwm, tomtom
from probe import ProbeError

#: factor -> (the JASPAR matrix planted, a word that the family or name of a right answer holds)
PLANTED = {"AP-1": ("MA0099.4", ("Fos-related", "Jun-related")), "CTCF": ("MA0139.2", ("CTCF",)),
           "SP1": ("MA0079.5", ("Kruppel-related",)), "NRF1": ("MA0506.3", ("NRF",))}


@pytest.fixture(scope="module")
def db():
    return jaspar_motifs("CORE", "vertebrates")


@pytest.fixture(scope="module")
def planted():
    """Per factor: 12 sequences with one sampled site each, and seqlets around the sites, shifted by up to
    2 bases either way and widened by 4, as an attribution's seqlets would be."""
    rng = np.random.default_rng(0)
    out = {}
    for k, (factor, (mid, _)) in enumerate(PLANTED.items()):
        data = planted_sites({factor: mid}, 12, 100, seed=k)
        s = data.sites[["sequence", "start", "end"]].copy()
        shift = rng.integers(-2, 3, len(s))
        s["start"] = (s.start - 4 + shift).clip(lower=0)
        s["end"] = (s.end + 4 + shift).clip(upper=100)
        out[factor] = (data, s)
    return out


@pytest.mark.slow
def test_planted_sites_are_named_by_their_family_with_q_below_005(db, planted):
    queries = [seqlet_pwm(data.X, s) for data, s in planted.values()]
    hits = tomtom(queries, db, top_k=3, query_names=list(planted))
    for factor, (_, words) in PLANTED.items():
        top = hits[hits["query"] == factor]
        right = top[[any(w in f or w in m for w in words) for f, m in zip(top.family, top.motif)]]
        assert len(right) and (right.q_value < 0.05).all(), (factor, top[["motif", "family", "q_value"]])
    assert (hits["rank"].to_numpy().reshape(4, 3) == [1, 2, 3]).all()


def test_p_values_equal_memelites_and_q_values_scipys(db, planted):
    from memelite import tomtom as reference

    # the targets built here from pyjaspar's counts, independently of motif_db
    ms = jaspar_db().fetch_motifs(collection="CORE", tax_group=["vertebrates"], all_versions=False)
    targets = []
    for m in ms:
        c = np.array([m.counts[b] for b in "ACGT"], dtype=float)
        targets.append(c / c.sum(0))
    data, s = planted["CTCF"]
    queries = [seqlet_pwm(data.X, s)] + [data.X[i, :, a:b].double().numpy() for i, a, b in s.to_numpy()[:3]]
    p_ref = reference(queries, targets, n_nearest=None, n_jobs=1)[0]
    got = tomtom(queries, db, top_k=None)
    assert [m.matrix_id for m in ms] == list(db.ids)
    for i in range(len(queries)):
        row = got[got["query"] == str(i)].set_index("matrix_id").loc[list(db.ids)]
        np.testing.assert_allclose(row.p_value.to_numpy(), p_ref[i], rtol=0, atol=1e-6)
        np.testing.assert_allclose(row.q_value.to_numpy(), scipy.stats.false_discovery_control(p_ref[i]),
                                   rtol=1e-9)
        np.testing.assert_allclose(row.e_value.to_numpy(), p_ref[i] * len(targets), rtol=1e-12)
    assert (np.diff(got[got["query"] == "0"].p_value.to_numpy()) >= 0).all()


def test_benjamini_hochberg_by_hand():
    # sorted p = .01 .02 .03 .5 over m = 4: m p / rank = .04 .04 .04 .5
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.5, 0.01, 0.03, 0.02])), [0.5, 0.04, 0.04, 0.04])
    # two reported hits among 100 tests (the other 98 p-values are larger)
    np.testing.assert_allclose(benjamini_hochberg(np.array([1e-4, 1e-5]), m=100), [5e-3, 1e-3])


def test_annotate_seqlets_gives_top_k_rows_per_seqlet(db, planted):
    data, s = planted["CTCF"]
    out = annotate_seqlets(data.X, s.iloc[:4], db, top_k=2)
    assert len(out) == 8 and out.groupby(["sequence", "start"]).size().eq(2).all()
    assert set(out.columns) >= {"sequence", "start", "end", "matrix_id", "motif", "p_value", "q_value"}


def test_fimo_finds_the_planted_sites_and_no_negative_score(planted, db):
    data, _ = planted["CTCF"]
    sub = db.subset(["MA0139.2", "MA0079.5", "MA0506.3"])
    hits = scan_motifs(data.X, sub, threshold=1e-4)
    assert (hits.score > 0).all() and (hits.p_value < 1e-4).all()
    ctcf = hits[(hits.matrix_id == "MA0139.2") & (hits.q_value < 0.05)]
    truth = data.sites
    found = {(r.sequence, r.start, r.strand) for r in ctcf.itertuples()}
    assert sum((r.sequence, r.start, r.strand) in found for r in truth.itertuples()) >= 10
    # everything with a positive score under a loose threshold, and still nothing negative
    loose = scan_motifs(data.X[:2], sub, threshold=0.5)
    assert len(loose) and (loose.score > 0).all()


def test_match_motifs_reports_no_negative_score_hit(planted):
    data, s = planted["SP1"]
    # a region of poly-A matches none of these GC-rich factors with a positive score
    X = data.X[:1].clone()
    X[0, :, 10:30] = 0
    X[0, 0, 10:30] = 1
    out = match_motifs(X, pd.DataFrame({"sequence": [0], "start": [12], "end": [26]}),
                       motifs={"SP1": "MA0079.5", "NRF1": "MA0506.3"})
    assert out.motif.isna().all()
    good = match_motifs(data.X, s.iloc[:3], motifs={"SP1": "MA0079.5", "NRF1": "MA0506.3"})
    assert (good.score.dropna() > 0).all()


def test_motif_sets_by_name_release_file_and_ids(tmp_path, db):
    assert len(db) > 500 and db.source.endswith("CORE vertebrates")
    older = motif_set("fungi@JASPAR2024")
    assert older.source == "JASPAR2024 CORE fungi" and len(older) > 100
    meme = tmp_path / "two.meme"
    meme.write_text("MEME version 4\n\nALPHABET= ACGT\n\nMOTIF M1 first\nletter-probability matrix: alength= 4 w= 2\n"
                    "1 0 0 0\n0 0.5 0.5 0\n\nMOTIF M2\nletter-probability matrix: alength= 4 w= 1\n0 0 0 1\n")
    m = motif_set(meme)
    assert m.ids == ("M1", "M2") and m.names == ("first", "M2") and m.pwms[0][:, 1].tolist() == [0, 0.5, 0.5, 0]
    assert motif_set(["MA0139.2"]).names == ("CTCF",)
    with pytest.raises(ProbeError, match="MA9999.1"):
        motif_set(["MA9999.1"])

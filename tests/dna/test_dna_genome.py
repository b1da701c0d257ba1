"""Genome windows, BED regions and VCF variants: exact windows worked out by hand, effects equal to full passes."""

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from domains.dna import one_hot, reverse_complement
from domains.dna.datasets import synthetic_genome
from domains.dna.genome import Genome, centred_windows, read_bed, tile_genome
from domains.dna.ism import saturation_mutagenesis
from domains.dna.models import small_cnn
from domains.dna.regions import predict_windows, region_ism
from domains.dna.variants import read_vcf, variant_effects, variant_windows
from probe import ProbeError

VCF_HEADER = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=3000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    synthetic_genome(path, {"chr1": 3000, "chr2": 700}, seed=1)
    return Genome(path)


@pytest.fixture(scope="module")
def chrom1(genome):
    return genome.fetch("chr1", 0, 3000)


def _model(k=2, seed=0):
    return small_cnn(k, channels=4, kernel=5, seed=seed)


def test_fetch_pads_with_n_and_reverse_complements(genome, chrom1):
    assert genome.chroms == {"chr1": 3000, "chr2": 700}
    assert genome.fetch("chr1", -3, 4) == "NNN" + chrom1[:4]
    assert genome.fetch("chr1", 2998, 3002) == chrom1[2998:] + "NN"
    assert genome.fetch("chr1", 10, 20, "-") == reverse_complement(chrom1[10:20])
    with pytest.raises(ProbeError, match="chromosome 'chr9' is not in genome g.fa"):
        genome.fetch("chr9", 0, 5)


def test_bgzip_reads_the_same_and_plain_gzip_is_refused(genome, tmp_path):
    from Bio import bgzf

    data = genome.path.read_bytes()
    with bgzf.BgzfWriter(str(tmp_path / "g.fa.gz"), "wb") as fh:
        fh.write(data)
    assert Genome(tmp_path / "g.fa.gz").fetch("chr2", 100, 160) == genome.fetch("chr2", 100, 160)
    (tmp_path / "p.fa.gz").write_bytes(gzip.compress(data))
    with pytest.raises(ProbeError, match="not with bgzip"):
        Genome(tmp_path / "p.fa.gz")


def test_bed_windows_centred_on_summit_or_middle_with_strand(genome, chrom1, tmp_path):
    bed = tmp_path / "peaks.narrowPeak"
    bed.write_text("track name=x\nchr1\t100\t200\tp1\t5\t-\t1\t1\t1\t30\n"
                   "chr1\t1000\t1101\t.\t.\t.\t1\t1\t1\t-1\n")
    regions = read_bed(bed)
    assert regions.name.tolist() == ["p1", "chr1:1000-1101"] and regions.strand.tolist() == ["-", "+"]
    w = centred_windows(regions, 20)
    assert w[["start", "end"]].to_numpy().tolist() == [[120, 140], [1040, 1060]]
    X = genome.one_hot(w)
    assert torch.equal(X, one_hot([reverse_complement(chrom1[120:140]), chrom1[1040:1060]]))
    (tmp_path / "bad.bed").write_text("chr1\t10\n")
    with pytest.raises(ProbeError, match="bad.bed line 1 has 2 field"):
        read_bed(tmp_path / "bad.bed")


def test_tiles_cover_each_chromosome(genome):
    w = tile_genome(genome, 300, stride=200)
    assert (w.chrom == "chr1").sum() == 14 and (w.chrom == "chr2").sum() == 3
    assert w.iloc[-1].tolist() == ["chr2", 400, 700, "+", "chr2:400-700"]


def _vcf(tmp_path, lines):
    p = tmp_path / "v.vcf"
    p.write_text(VCF_HEADER + "".join("\t".join(map(str, r)) + "\t.\t.\t.\n" for r in lines))
    return p


def test_vcf_splits_multiallelic_sites_and_refuses_symbolic_alleles(tmp_path, chrom1):
    p = _vcf(tmp_path, [("chr1", 11, "rs1", chrom1[10], "A,T"), ("chr1", 31, ".", chrom1[30], "<DEL>")])
    with pytest.raises(ProbeError, match=r"variant chr1:31 .*<DEL> in v.vcf has an allele without a sequence"):
        read_vcf(p)
    with pytest.warns(UserWarning, match="left out 1 allele"):
        v = read_vcf(p, symbolic="skip")
    assert v[["POS", "ID", "ALT", "allele"]].to_numpy().tolist() == [[11, "rs1", "A", 1], [11, "rs1", "T", 2]]


def test_indel_windows_keep_the_variant_in_place(genome, chrom1):
    s = chrom1
    v = pd.DataFrame({"CHROM": ["chr1"] * 3, "POS": [101, 201, 301], "ID": ["snv", "del", "ins"],
                      "REF": [s[100], s[200:203], s[300]],
                      "ALT": ["A" if s[100] != "A" else "C", s[200], s[300] + "GG"]})
    xr, xa = variant_windows(genome, v, 10)
    assert torch.equal(xr, one_hot([s[95:105], s[195:205], s[295:305]]))
    # the variant's first base at 10 // 2 = 5; a deletion pulls in what follows REF, an insertion pushes out
    want = [s[95:100] + v.ALT[0] + s[101:105], s[195:201] + s[203:207], (s[295:301] + "GG" + s[301:305])[:10]]
    assert torch.equal(xa, one_hot(want))


def test_variant_effects_equal_full_forward_passes(genome, chrom1, tmp_path):
    s, width = chrom1, 41
    rng = np.random.default_rng(0)
    pos = rng.choice(np.arange(30, 2900), 12, replace=False)
    rows = [("chr1", int(p) + 1, f"v{i}", s[p], "ACGT"[("ACGT".index(s[p]) + 1) % 4]) for i, p in enumerate(pos)]
    rows += [("chr1", 1500, "d", s[1499:1502], s[1499]), ("chr1", 1600, "i", s[1599], s[1599] + "TTA")]
    vcf = _vcf(tmp_path, rows)
    model = _model(3)
    model.train()
    got = variant_effects(model, genome, vcf, width=width, batch_size=5, chunk_size=4)
    assert model.training  # the caller's mode comes back
    v = read_vcf(vcf)
    xr, xa = variant_windows(genome, v, width)
    with torch.no_grad():
        model.eval()
        yr, ya = model(xr).numpy(), model(xa).numpy()
        rr, ra = model(xr.flip(1, 2)).numpy(), model(xa.flip(1, 2)).numpy()
    assert got[["CHROM", "POS", "ID", "REF", "ALT"]].equals(v[["CHROM", "POS", "ID", "REF", "ALT"]])
    for k in range(3):
        np.testing.assert_allclose(got[f"ref_{k}"], yr[:, k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got[f"delta_{k}"], ya[:, k] - yr[:, k], rtol=1e-5, atol=1e-6)
    both = variant_effects(model, genome, v, width=width, rc=True, output_names=["a", "b", "c"])
    np.testing.assert_allclose(both["delta_b"], ((ya + ra) / 2 - (yr + rr) / 2)[:, 1], rtol=1e-5, atol=1e-6)
    # the reference window of the first SNV, cut from the string by hand
    p = int(pos[0])
    with torch.no_grad():
        direct = model(one_hot(s[p - width // 2:p - width // 2 + width])).numpy()[0]
    np.testing.assert_allclose(got.loc[0, ["ref_0", "ref_1", "ref_2"]].to_numpy(float), direct, rtol=1e-6)


def test_ref_mismatch_names_the_variant(genome, chrom1):
    wrong = "ACGT"[("ACGT".index(chrom1[499]) + 2) % 4]
    v = pd.DataFrame({"CHROM": ["chr1", "chr1"], "POS": [100, 500], "ID": ["ok", "rs42"],
                      "REF": [chrom1[99], wrong], "ALT": ["N", "A"]})
    calls = []
    model = _model()
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ProbeError, match=rf"variant chr1:500 rs42 {wrong}>A: REF '{wrong}' does not match genome "
                                         rf"g.fa, which has '{chrom1[499]}'"):
        variant_effects(model, genome, v, width=21)
    assert not calls  # refused before any model call
    v2 = v.iloc[:1].assign(CHROM="chrUn")
    with pytest.raises(ProbeError, match="chromosome 'chrUn' is not in genome"):
        variant_effects(model, genome, v2, width=21)
    v3 = v.iloc[:1].assign(POS=3000, REF="AC")
    with pytest.raises(ProbeError, match="lies outside chr1"):
        variant_effects(model, genome, v3, width=21)


def test_predictions_and_region_ism_equal_the_plain_calls(genome, tmp_path):
    regions = pd.DataFrame({"chrom": ["chr1", "chr2", "chr1"], "start": [50, 300, 2990], "end": [90, 340, 3000],
                            "strand": ["+", "-", "+"], "name": ["a", "b", "edge"]})
    w = centred_windows(regions, 24, centre="middle")
    model = _model(2)
    X = genome.one_hot(w)
    with torch.no_grad():
        want = model(X).numpy()
    got = predict_windows(model, genome, w, chunk_size=2, batch_size=1)
    np.testing.assert_allclose(got[["y_0", "y_1"]].to_numpy(), want, rtol=1e-6)
    res = region_ism(model, genome, w, chunk_size=2)
    torch.testing.assert_close(torch.from_numpy(res["ism"]), saturation_mutagenesis(model, X, fast=False))
    store = region_ism(model, genome, w, chunk_size=2, store=tmp_path / "ism.zarr")
    assert store.complete and np.array_equal(store["ism"][:], res["ism"])
    assert store.coords().name.tolist() == ["a", "b", "edge"]


def test_unequal_windows_and_bad_letters_are_named(genome, tmp_path):
    w = pd.DataFrame({"chrom": ["chr1", "chr1"], "start": [0, 10], "end": [10, 30], "name": ["p", "q"]})
    with pytest.raises(ProbeError, match=r"window chr1:10-30\(\+\) \(q\) is 20 bases"):
        genome.one_hot(w)
    fa = tmp_path / "amb.fa"
    fa.write_text(">c\nACGTRACGTA\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = Genome(fa)
    with pytest.raises(ProbeError, match=r"window c:0-8\(\+\) holds the ambiguity letter 'R' at position 4"):
        g.one_hot(pd.DataFrame({"chrom": ["c"], "start": [0], "end": [8]}))
    assert Genome(fa, iupac="fractional").one_hot(pd.DataFrame({"chrom": ["c"], "start": [4], "end": [5]}))[
        0, :, 0].tolist() == [0.5, 0, 0.5, 0]

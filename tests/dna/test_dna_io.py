"""Encoding, FASTA input and bad input: one-hot round trips, IUPAC, padding, reverse complement, errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.dna import decode, one_hot, read_fasta, reverse_complement
from domains.dna.datasets import crp_sites
from probe import ProbeError

dna = st.text(alphabet="ACGT", min_size=1, max_size=60)


@settings(max_examples=50, deadline=None)
@given(st.lists(dna, min_size=1, max_size=5).map(lambda xs: [x.ljust(len(max(xs, key=len)), "A") for x in xs]))
def test_one_hot_round_trip(seqs):
    X = one_hot(seqs)
    assert X.shape == (len(seqs), 4, len(seqs[0]))
    assert torch.equal(X.sum(1), torch.ones(len(seqs), len(seqs[0])))
    assert decode(X) == seqs


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="ACGTNRYSWKMBDHV", min_size=1, max_size=40))
def test_reverse_complement_string_matches_tensor(seq):
    X = one_hot(seq, iupac="fractional")
    assert torch.allclose(reverse_complement(X), one_hot(reverse_complement(seq), iupac="fractional"))
    assert reverse_complement(reverse_complement(seq)) == seq


def test_n_is_zero_and_iupac_is_explicit():
    X = one_hot("ANR", iupac="fractional")
    assert X[0, :, 1].sum() == 0
    assert torch.allclose(X[0, :, 2], torch.tensor([0.5, 0.0, 0.5, 0.0]))
    with pytest.raises(ProbeError, match=r"'s1'.*'R' at position 2"):
        one_hot(["ACGT", "ACRT"], names=["s0", "s1"])
    assert one_hot("acgu").argmax(1).tolist() == [[0, 1, 2, 3]]


def test_unequal_lengths_refused_or_padded():
    with pytest.raises(ProbeError, match=r"'seq1'.*3 bases"):
        one_hot(["ACGT", "ACG"])
    X = one_hot(["ACGT", "AC"], pad="both")
    assert decode(X) == ["ACGT", "NACN"]
    assert decode(one_hot(["AC"], pad="right", length=4)) == ["ACNN"]
    with pytest.raises(ProbeError, match="more than length"):
        one_hot(["ACGTA"], pad="right", length=4)


@pytest.mark.parametrize("text, pattern", [
    ("", "holds no records"),
    ("this is not fasta\nACGT\n", "could not be parsed"),
    (">r1\nACGT\n>r2\nACXT\n", r"'r2'.*'X' at position 2"),
    (">r1\nACGT\n>empty\n\n", r"'empty'.*zero-length"),
])
def test_bad_fasta_names_the_record(tmp_path, text, pattern):
    path = tmp_path / "in.fa"
    path.write_text(text)
    with pytest.raises(ProbeError, match=pattern):
        read_fasta(path)


def test_fasta_reads_records(tmp_path):
    path = tmp_path / "ok.fa"
    path.write_text(">a desc\nACGT\nAC\n>b\nnnGT\n")
    seqs = read_fasta(path)
    assert seqs.names == ("a", "b") and seqs.sequences == ("ACGTAC", "NNGT")
    with pytest.raises(ProbeError, match="does not exist"):
        read_fasta(tmp_path / "missing.fa")


def test_crp_sites_ship_with_logomaker():
    seqs = crp_sites()
    assert len(seqs) == 358 and set(seqs.lengths) == {26}
    X = one_hot(seqs)
    # CRP's palindromic TGTGA...TCACA half sites: the consensus T-G-T-G-A at positions 3-7 (of 26)
    consensus = decode(X.mean(0, keepdim=True))[0]
    assert "TGTGA" in consensus and "TCACA" in consensus

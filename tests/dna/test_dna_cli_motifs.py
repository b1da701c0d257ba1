"""`probe dna` on a user's FASTA: --motifs, --n all, record names shared by every output, the --pad hint."""

import json

import pandas as pd
import pytest
import torch

from domains.dna.datasets import planted_sites
from probe.cli import main


@pytest.fixture
def user_files(tmp_path):
    """Eight sequences with a CTCF site each, and a small model built by a factory file."""
    data = planted_sites({"CTCF": "MA0139.2"}, 8, 40, seed=3, sharpen=3)
    fasta = tmp_path / "peaks.fa"
    names = [f"peak_{i}" for i in range(8)]
    fasta.write_text("".join(f">{n}\n{s}\n" for n, s in zip(names, data.sequences.sequences)))
    net = tmp_path / "net.py"
    net.write_text("import torch\n\ndef make():\n    torch.manual_seed(0)\n    return torch.nn.Sequential("
                   "torch.nn.Conv1d(4, 4, 7, padding=3), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool1d(1), "
                   "torch.nn.Flatten(), torch.nn.Linear(4, 2))\n")
    return fasta, net, names


def test_n_all_motifs_and_the_same_names_everywhere(tmp_path, user_files, capsys):
    fasta, net, names = user_files
    out = tmp_path / "r"
    with pytest.warns(UserWarning, match="fewer than 25 targets"):  # TomTom's p-values need a whole database
        assert main(["dna", "--quick", "--out", str(out), "--model", f"{net}:make", "--fasta", str(fasta), "--n",
                     "all", "--max-edits", "1", "--motifs", "MA0139.2,MA0079.5,MA0506.3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sequences"] == summary["sequences_total"] == 8 and summary["reported"] == "8 of 8 sequences"
    assert "reporting on 8 of 8 sequences" in capsys.readouterr().err
    edits, motifs = pd.read_csv(out / "edits.csv"), pd.read_csv(out / "motifs.csv")
    assert set(edits.name) <= set(names) and set(motifs.name) <= set(names) and set(summary["edits"]) == set(names)
    assert {"p_value", "q_value", "rank", "family"} <= set(motifs.columns)
    assert set(motifs.matrix_id) <= {"MA0139.2", "MA0079.5", "MA0506.3"}
    assert all(m["name"] in names for m in summary["motifs"])


def test_n_counts_what_is_reported(tmp_path, user_files, capsys):
    fasta, net, _ = user_files
    out = tmp_path / "r"
    with pytest.warns(UserWarning, match="fewer than 25 targets"):
        assert main(["dna", "--quick", "--out", str(out), "--model", f"{net}:make", "--fasta", str(fasta), "--n",
                     "3", "--max-edits", "1", "--motifs", "MA0139.2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reported"] == "3 of 8 sequences (--n all reports every one)"
    assert "3 of 8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dna", "--n", "zero"])
    assert "expected a positive integer or 'all'" in capsys.readouterr().err


def test_unequal_lengths_name_the_pad_flag(tmp_path, user_files, capsys):
    fasta, net, _ = user_files
    fasta.write_text(fasta.read_text() + ">short\nACGTACGT\n")
    assert main(["dna", "--quick", "--out", str(tmp_path / "r"), "--model", f"{net}:make", "--fasta",
                 str(fasta)]) == 2
    err = capsys.readouterr().err
    assert "record 'short'" in err and "--pad right" in err and "pad='right'" not in err
    torch.manual_seed(0)  # the factory seeds the global generator; leave it seeded for whatever runs next

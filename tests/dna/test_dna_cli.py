"""`probe dna --model`: a user's state_dict plus factory, end to end on a small FASTA; wrong models say why."""

import json

import pytest
import torch

from probe.cli import main

NET_SOURCE = '''
import torch


class Net(torch.nn.Module):
    def __init__(self, channels=4):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, channels, 5, padding=2)
        self.head = torch.nn.Linear(channels, 2)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(2))


def make(channels=4):
    return Net(channels)
'''


@pytest.fixture
def user_files(tmp_path):
    """A tiny FASTA, a model file defining a factory, and weights saved from that factory's model."""
    g = torch.Generator().manual_seed(0)
    fasta = tmp_path / "seqs.fa"
    names = ["s1", "s2", "s3"]
    fasta.write_text("".join(f">{n}\n{''.join('ACGT'[int(i)] for i in torch.randint(0, 4, (24,), generator=g))}\n"
                     for n in names))
    netfile = tmp_path / "usernet.py"
    netfile.write_text(NET_SOURCE)
    from probe.loading import load_model

    model = load_model(f"{netfile}:make", factory_kwargs={"channels": 3})
    weights = tmp_path / "weights.pth"
    torch.save({"model_state_dict": model.state_dict(), "epoch": 1}, weights)
    return fasta, netfile, weights, names


def test_state_dict_and_factory_end_to_end(tmp_path, user_files):
    fasta, netfile, weights, names = user_files
    out = tmp_path / "report"
    assert main(["dna", "--quick", "--out", str(out), "--model", str(weights), "--factory", f"{netfile}:make",
                 "--factory-kwargs", '{"channels": 3}', "--fasta", str(fasta), "--n", "2", "--max-edits", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source"] == str(fasta) and summary["sequences"] == 2
    assert set(summary["edits"]) == set(names[:2])
    assert all((out / f"{n}.png").exists() for n in names[:2]) and (out / "edits.csv").exists()


def test_wrong_models_exit_with_the_reason(tmp_path, user_files, capsys):
    fasta, netfile, weights, _ = user_files
    base = ["dna", "--quick", "--out", str(tmp_path / "o"), "--fasta", str(fasta), "--n", "1"]
    assert main([*base, "--model", str(weights)]) == 2
    err = capsys.readouterr().err
    assert f"model file '{weights}' holds a state_dict" in err and "--factory" in err
    # weights built for 3 channels into a 5-channel model
    assert main([*base, "--model", str(weights), "--factory", f"{netfile}:make", "--factory-kwargs",
                 '{"channels": 5}']) == 2
    assert "shape mismatch(es) ('conv.weight': file (3, 4, 5), model (5, 4, 5)" in capsys.readouterr().err
    # a model returning (profile, counts) needs --model-output
    from bpnetlite.bpnet import BPNet

    bp = tmp_path / "bpnet.pt"
    kwargs = {"n_filters": 4, "n_layers": 1, "n_control_tracks": 0, "trimming": 4, "verbose": False}
    torch.save(BPNet(**kwargs).state_dict(), bp)
    assert main([*base, "--model", str(bp), "--factory", "bpnetlite.bpnet:BPNet", "--factory-kwargs",
                 json.dumps(kwargs)]) == 2
    assert "returns a tuple of 2 outputs" in capsys.readouterr().err
    assert main(["dna", "--quick", "--out", str(tmp_path / "o"), "--factory", f"{netfile}:make"]) == 2
    assert "needs --model" in capsys.readouterr().err


def test_help_names_the_formats(capsys):
    with pytest.raises(SystemExit):
        main(["dna", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--factory MODULE:FUNCTION", "--factory-kwargs JSON", "--trust-pickle", "--model-output"):
        assert flag in text
    assert "torch.export archive (.pt2)" in text and "state_dict" in text


@pytest.fixture(autouse=True)
def _entry_points(monkeypatch):
    """The dna command is found through the entry point even when this checkout is not installed."""
    import probe.cli
    from domains.dna.cli import COMMAND

    found = probe.cli.discover

    def discover():
        cmds = found()
        cmds["dna"] = COMMAND
        return cmds

    monkeypatch.setattr(probe.cli, "discover", discover)

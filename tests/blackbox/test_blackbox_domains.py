"""Domain entry points accept black-box models: DNA ISM and minimal edits, chem atom maps."""

import numpy as np
import pytest
import torch

import probe
from domains import dna
from probe.models import wrap

PWM = np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.7, 0.1, 0.1],
                       [0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]]).T / 0.25)   # (4, 5) log-odds of AGCTA


def motif_score_numpy(a):
    """Best log-odds match of the motif anywhere in each one-hot sequence (N, 4, L): NumPy only."""
    w = PWM.shape[1]
    windows = np.stack([(a[:, :, i:i + w] * PWM).sum((1, 2)) for i in range(a.shape[2] - w + 1)], 1)
    return windows.max(1, keepdims=True)


class MotifScore(torch.nn.Module):
    """The same model in torch (a convolution and a max), the white-box twin."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 1, PWM.shape[1], bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.as_tensor(PWM[None], dtype=torch.float32))

    def forward(self, x):
        return self.conv(x).amax(2)


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 30)) for _ in range(4)]
    seqs = [s[:10] + "AGCTA" + s[15:] for s in seqs]   # every sequence carries the motif
    return dna.one_hot(seqs)


def test_saturation_mutagenesis_of_a_numpy_model_equals_its_torch_twin(sequences):
    box = wrap(motif_score_numpy)
    ism_black = dna.saturation_mutagenesis(box, sequences)
    ism_white = dna.saturation_mutagenesis(MotifScore(), sequences)
    assert ism_black.shape == sequences.shape
    torch.testing.assert_close(ism_black.float(), ism_white.float(), atol=1e-5, rtol=1e-5)
    assert box.queries >= 3 * sequences.shape[2] * len(sequences)   # every single substitution was evaluated


def test_minimal_edits_guided_by_ism_on_a_black_box(sequences):
    crit = probe.Threshold(2.0, direction="down")   # break the motif
    black = dna.minimal_edits(wrap(motif_score_numpy), sequences, crit, guide="ism", max_edits=4)
    white = dna.minimal_edits(MotifScore(), sequences, crit, guide="ism", max_edits=4)
    assert black.success.any() and torch.equal(black.success, white.success)
    assert [len(e) for e in black.edits] == [len(e) for e in white.edits]
    ok = black.success.numpy()
    assert (motif_score_numpy(black.x_adv.numpy())[ok, 0] < 2.0).all()
    with pytest.raises(probe.ProbeError):
        dna.minimal_edits(wrap(motif_score_numpy), sequences, crit, guide="gradient", max_edits=4)


def test_chem_atom_maps_accept_wrapped_estimators():
    pytest.importorskip("rdkit")  # as in tests/chem: the chem domain needs RDKit
    from sklearn.ensemble import RandomForestRegressor

    from domains import chem
    from domains.chem.datasets import sulfonamides

    data = sulfonamides().iloc[:40]
    feats = chem.featurize(data["smiles"].tolist(), kind="morgan", n_bits=512)
    y = data["pIC50"].to_numpy()[: len(feats.X)]
    rf = RandomForestRegressor(n_estimators=10, random_state=0).fit(feats.X.numpy(), y)
    box = wrap(rf)
    maps_black = chem.atom_weights(box, feats, [0, 1, 2])
    maps_raw = chem.atom_weights(rf, feats, [0, 1, 2])
    for a, b in zip(maps_black.weights, maps_raw.weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    assert box.queries == maps_black.queries
    with pytest.raises(probe.ProbeError):
        chem.atom_weights(box, feats, [0], method="gradient")

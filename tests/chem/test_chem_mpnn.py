"""chemprop networks: loading, prediction, atom and bond attributions (ground truth first)."""

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("chemprop")

from rdkit import Chem  # noqa: E402
from rdkit.Chem import Crippen  # noqa: E402

from probe.errors import ProbeError  # noqa: E402

SMALL = ["CCO", "CCCCO", "Clc1ccccc1", "CC(=O)O", "CCN(CC)CC", "OCCO", "c1ccncc1", "CC(C)Cl"]


@pytest.fixture(scope="session")
def logp_mpnn():
    """A small chemprop network trained on RDKit's Crippen logP of 200 solubility-set molecules (seconds)."""
    from domains.chem import datasets
    from domains.chem.mpnn import fit_mpnn

    smiles = list(datasets.solubility()["smiles"][::6][:200])
    y = [Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in smiles]
    return fit_mpnn(smiles, y, hidden=32, ffn_hidden=32, depth=2, epochs=12, lr=3e-3, seed=0)


def _zero_graph_outputs(net, smiles):
    from chemprop.data import BatchMolGraph, MolGraph
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer

    fz = SimpleMoleculeMolGraphFeaturizer()
    gs = [fz(Chem.MolFromSmiles(s)) for s in smiles]
    zero = [MolGraph(g.V * 0, g.E * 0, g.edge_index, g.rev_edge_index) for g in gs]
    with torch.no_grad():
        return net(BatchMolGraph(zero))[:, 0].double().numpy()


def test_fit_predicts_logp(logp_mpnn):
    from domains.chem.mpnn import mpnn_predict

    pred = mpnn_predict(logp_mpnn, SMALL)
    true = np.array([Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in SMALL])
    assert pred.shape == (len(SMALL), 1)
    assert np.corrcoef(pred[:, 0], true)[0, 1] > 0.8


def test_load_from_file_object_and_errors(logp_mpnn, tmp_path):
    from chemprop.models import save_model

    from domains.chem.mpnn import load_mpnn, mpnn_predict

    path = tmp_path / "net.pt"
    save_model(path, logp_mpnn)
    loaded = load_mpnn(path)
    assert load_mpnn(logp_mpnn) is logp_mpnn
    np.testing.assert_allclose(mpnn_predict(loaded, SMALL), mpnn_predict(logp_mpnn, SMALL), atol=1e-5)
    with pytest.raises(ProbeError, match="does not exist"):
        load_mpnn(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ProbeError, match="junk.pt"):
        load_mpnn(tmp_path / "junk.pt")
    with pytest.raises(ProbeError, match="invalid SMILES"):
        mpnn_predict(logp_mpnn, ["CCO", "C1CC"])


def test_integrated_gradients_are_complete(logp_mpnn):
    """Atom and bond terms together sum to f(x) - f(0) (Sundararajan et al. 2017), here up to quadrature."""
    from domains.chem.mpnn import mpnn_atom_weights

    maps = mpnn_atom_weights(logp_mpnn, SMALL, method="integrated_gradients", steps=64)
    f0 = _zero_graph_outputs(logp_mpnn, SMALL)
    total = np.array([w.sum() for w in maps.weights])
    # atom weights already hold half of each bond term each: together they carry every bond once
    bonds = np.array([b.sum() for b in maps.bond_weights])
    assert np.all(np.abs(bonds) > 0)
    np.testing.assert_allclose(total, maps.prediction - f0, atol=2e-2 * np.abs(maps.prediction - f0).max())
    assert [len(w) for w in maps.weights] == [Chem.MolFromSmiles(s).GetNumAtoms() for s in SMALL]
    assert [len(b) for b in maps.bond_weights] == [Chem.MolFromSmiles(s).GetNumBonds() for s in SMALL]


def test_ablation_is_the_masked_difference(logp_mpnn):
    """w_a = f(G) - f(G with atom a's row and its bonds' rows zeroed), computed here by hand."""
    from chemprop.data import BatchMolGraph, MolGraph
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer

    from domains.chem.mpnn import mpnn_atom_weights

    smi = "CC(=O)Nc1ccccc1"
    maps = mpnn_atom_weights(logp_mpnn, [smi], method="ablation")
    g = SimpleMoleculeMolGraphFeaturizer()(Chem.MolFromSmiles(smi))
    a = 3  # the amide nitrogen
    V, E = g.V.copy(), g.E.copy()
    V[a] = 0
    E[(g.edge_index[0] == a) | (g.edge_index[1] == a)] = 0
    with torch.no_grad():
        f = logp_mpnn(BatchMolGraph([g]))[0, 0].item()
        f_a = logp_mpnn(BatchMolGraph([MolGraph(V, E, g.edge_index, g.rev_edge_index)]))[0, 0].item()
        E_b = g.E.copy()
        E_b[[0, 1]] = 0  # bond 0, both directions
        f_b = logp_mpnn(BatchMolGraph([MolGraph(g.V, E_b, g.edge_index, g.rev_edge_index)]))[0, 0].item()
    assert maps.weights[0][a] == pytest.approx(f - f_a, abs=1e-5)
    assert maps.bond_weights[0][0] == pytest.approx(f - f_b, abs=1e-5)
    n = Chem.MolFromSmiles(smi)
    assert maps.queries == 1 + n.GetNumAtoms() + n.GetNumBonds()


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients", "ablation"])
def test_batch_size_invariance_and_model_state(logp_mpnn, method):
    from domains.chem.mpnn import mpnn_atom_weights

    logp_mpnn.train()
    flags = [p.requires_grad for p in logp_mpnn.parameters()]
    a = mpnn_atom_weights(logp_mpnn, SMALL, method=method, steps=8, batch_size=3)
    b = mpnn_atom_weights(logp_mpnn, SMALL, method=method, steps=8, batch_size=128)
    assert logp_mpnn.training and [p.requires_grad for p in logp_mpnn.parameters()] == flags
    logp_mpnn.eval()
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(wa, wb, atol=1e-5)
    assert a.method == f"mpnn_{method}"
    assert len(a.to_frame()) == sum(len(w) for w in a.weights)


def test_heteroatoms_lower_logp_in_the_maps(logp_mpnn):
    """Crippen's O and N contributions are negative, carbons' positive: the maps must rank them so."""
    from domains.chem.atoms import atom_contributions
    from domains.chem.mpnn import mpnn_atom_weights

    maps = mpnn_atom_weights(logp_mpnn, SMALL, method="integrated_gradients", steps=16)
    w = np.concatenate(maps.weights)
    c = np.concatenate([atom_contributions(m)["MolLogP"] for m in maps.mols])
    hetero = np.concatenate([[a.GetSymbol() in ("O", "N") for a in m.GetAtoms()] for m in maps.mols])
    assert w[hetero].mean() < w[~hetero].mean()
    assert np.corrcoef(w, c)[0, 1] > 0.5


def test_bad_arguments(logp_mpnn):
    from domains.chem.mpnn import fit_mpnn, mpnn_atom_weights

    with pytest.raises(ProbeError, match="method"):
        mpnn_atom_weights(logp_mpnn, SMALL, method="shap")
    with pytest.raises(ProbeError, match="steps"):
        mpnn_atom_weights(logp_mpnn, SMALL, method="integrated_gradients", steps=0)
    with pytest.raises(ProbeError, match="3 targets for 2 molecules"):
        fit_mpnn(["CCO", "CCC"], [1.0, 2.0, 3.0])


def test_counterfactuals_of_a_chemprop_network_pass_the_filters(logp_mpnn):
    """Graph-edit counterfactuals: every one passes the filters, is similar, and crosses per the network."""
    from domains.chem.counterfactuals import counterfactuals
    from domains.chem.filters import MoleculeFilters
    from domains.chem.mpnn import mpnn_predict
    from domains.chem.shifts import Drop

    smi = "CCOC(=O)c1ccc(O)cc1"
    cf = counterfactuals(logp_mpnn, smi, Drop(0.5), n_samples=300, top=5)
    assert len(cf) > 0 and cf.crossed >= len(cf)
    ref = Chem.MolFromSmiles(smi)
    keep, _, scores = MoleculeFilters().apply([Chem.MolFromSmiles(s) for s in cf.table.smiles], ref)
    assert keep.all() and (scores.similarity >= 0.4).all()
    np.testing.assert_allclose(cf.table.similarity, scores.similarity, atol=1e-12)
    y = mpnn_predict(logp_mpnn, list(cf.table.smiles))[:, 0]
    np.testing.assert_allclose(y, cf.table.prediction, atol=1e-5)
    assert (y <= cf.prediction - 0.5 + 1e-5).all()
    # removed candidates cost no model call: rows = the input + the candidates that survived the filters
    assert set(cf.removed) == {"valid", "similarity", "sa_score", "qed", "alerts", "strain"}
    assert cf.queries == 1 + cf.candidates - sum(cf.removed.values())
    loose = counterfactuals(logp_mpnn, smi, Drop(0.5), n_samples=300, top=5, filters=None)
    assert loose.crossed >= cf.crossed and loose.removed == {}
    with pytest.raises(ProbeError, match="generator"):
        counterfactuals(logp_mpnn, smi, Drop(0.5), generator="random")


def test_cli_probes_a_chemprop_model_file(logp_mpnn, tmp_path, monkeypatch):
    import json

    from chemprop.models import save_model

    import probe.cli
    from domains.chem.cli import COMMAND

    found = probe.cli.discover
    monkeypatch.setattr(probe.cli, "discover", lambda: {**found(), "chem": COMMAND})
    path = tmp_path / "logp.pt"
    save_model(path, logp_mpnn)
    out = tmp_path / "report"
    assert probe.cli.main(["chem", "--quick", "--out", str(out), "--model", str(path), "--smiles",
                           "CCOC(=O)c1ccc(O)cc1", "Clc1ccccc1", "--delta", "0.5", "--samples", "150"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "chemprop MPNN" and len(s["molecules"]) == 2
    assert s["descriptor_shifts"].startswith("skipped: a chemprop network reads molecular graphs")
    assert (out / "atom_maps.png").exists() and (out / "atom_weights.csv").exists()
    first = next(iter(s["counterfactuals"].values()))
    assert set(first["removed_by_filters"]) >= {"valid", "similarity", "alerts"}


def test_load_a_lightning_checkpoint(tmp_path):
    """A checkpoint written by a Lightning Trainer, as chemprop's own training writes them."""
    import lightning.pytorch as pl
    from chemprop import data, models, nn

    from domains.chem.mpnn import load_mpnn, mpnn_predict

    points = [data.MoleculeDatapoint.from_smi(s, [Crippen.MolLogP(Chem.MolFromSmiles(s))]) for s in SMALL]
    loader = data.build_dataloader(data.MoleculeDataset(points), batch_size=4, num_workers=0, seed=0)
    net = models.MPNN(nn.BondMessagePassing(d_h=16), nn.MeanAggregation(), nn.RegressionFFN(input_dim=16,
                                                                                             hidden_dim=16))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's notes on the missing validation loader and workers
        trainer.fit(net, loader)
    path = tmp_path / "best.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_mpnn(path)
    np.testing.assert_allclose(mpnn_predict(loaded, SMALL), mpnn_predict(net.eval(), SMALL), atol=1e-6)

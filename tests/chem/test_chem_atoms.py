"""Atom maps: equal to RDKit's similarity-map weights, exact on linear models, any predict function."""

import warnings

import numpy as np
import pytest
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors
from rdkit.Chem.Draw import SimilarityMaps

from domains.chem.atoms import atom_contributions, atom_incidence, atom_weights, project_to_atoms
from domains.chem.featurize import featurize
from probe.errors import ProbeError

SMILES = ["O=S(=O)(Nc1cccs1)c1ccc(Oc2ccccc2-c2ccccc2)c(C#N)c1", "CC(=O)Nc1ccc(O)cc1", "OC(=O)c1ccccc1OC(C)=O"]


def _rdkit_weights(mol, predict, n_bits):
    def fp(m, a):
        return SimilarityMaps.GetMorganFingerprint(m, a, radius=2, fpType="bv", nBits=n_bits)

    def pred(v):
        arr = np.zeros((n_bits,))
        DataStructs.ConvertToNumpyArray(v, arr)
        return float(predict(arr[None])[0])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from rdkit import RDLogger

        RDLogger.DisableLog("rdApp.*")
        try:
            return np.asarray(SimilarityMaps.GetAtomicWeightsForModel(Chem.Mol(mol), fp, pred))
        finally:
            RDLogger.EnableLog("rdApp.*")


def test_ablation_equals_rdkit_similarity_map_weights(device):
    f = featurize(SMILES, kind="morgan", n_bits=1024)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1024, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double().to(device)
    f64 = featurize(SMILES, kind="morgan", n_bits=1024, dtype=torch.float64)
    maps = atom_weights(net, f64, device=device)

    def predict(a):
        with torch.no_grad():
            return net(torch.as_tensor(a, device=device))[:, 0].cpu().numpy()

    for i in range(len(SMILES)):
        ref = _rdkit_weights(f.molecules[i], predict, 1024)
        assert np.allclose(maps.weights[i], ref, atol=1e-10)
    assert maps.queries == len(SMILES) + sum(m.GetNumAtoms() for m in f.molecules.mols)


def test_sklearn_forest_forward_calls_only(sulfo_fp, sulfo_rf):
    maps = atom_weights(sulfo_rf, sulfo_fp, [0, 5])
    for k, i in enumerate([0, 5]):
        ref = _rdkit_weights(sulfo_fp.molecules[i], sulfo_rf.predict, 512)
        assert np.allclose(maps.weights[k], ref, atol=1e-9)
    with pytest.raises(ProbeError, match="differentiable"):
        atom_weights(sulfo_rf, sulfo_fp, 0, method="gradient")


def test_gradient_equals_ablation_on_a_linear_model():
    f = featurize(SMILES, kind=("morgan", "descriptors"), n_bits=512, dtype=torch.float64)
    torch.manual_seed(1)
    lin = torch.nn.Linear(len(f.names), 1).double()
    a = atom_weights(lin, f, method="ablation")
    g = atom_weights(lin, f, method="gradient")
    for wa, wg in zip(a.weights, g.weights):
        assert np.allclose(wa, wg, atol=1e-9)


def test_atom_additive_descriptors_sum_to_descriptor():
    for smi in SMILES:
        mol = Chem.MolFromSmiles(smi)
        c = atom_contributions(mol)
        assert np.isclose(c["MolLogP"].sum(), Crippen.MolLogP(mol))
        assert np.isclose(c["MolMR"].sum(), Crippen.MolMR(mol))
        assert np.isclose(c["TPSA"].sum(), rdMolDescriptors.CalcTPSA(mol))
        assert np.isclose(c["LabuteASA"].sum(), Descriptors.LabuteASA(mol))


def test_descriptor_model_atom_map_is_chain_rule_through_contributions(make_linear):
    """f linear in logP: atom weight = w * (Crippen contribution of the atom) / scale."""
    f = featurize(SMILES, kind="descriptors", dtype=torch.float64)
    model = make_linear(len(f.names), {"MolLogP": 0.7}, f.names).double()
    maps = atom_weights(model, f)
    j = f.names.index("MolLogP")
    for i, w in enumerate(maps.weights):
        expected = 0.7 * atom_contributions(f.molecules[i])["MolLogP"] / f.scale[j]
        assert np.allclose(w, expected, atol=1e-9)
        assert np.isclose(w.sum(), 0.7 * f.raw[i, j] / f.scale[j])


def test_project_to_atoms_matches_incidence_and_invariants(sulfo_fp, sulfo_mlp):
    s = np.random.default_rng(0).normal(size=len(sulfo_fp.names))
    assert np.allclose(project_to_atoms(sulfo_fp, 3, s), atom_incidence(sulfo_fp, 3) @ s)
    x_before = sulfo_fp.X.clone()
    sulfo_mlp.train()
    a1 = atom_weights(sulfo_mlp, sulfo_fp, [0, 1, 2], batch_size=7)
    a2 = atom_weights(sulfo_mlp, sulfo_fp, [0, 1, 2], batch_size=None)
    assert sulfo_mlp.training  # model state restored
    sulfo_mlp.eval()
    assert torch.equal(sulfo_fp.X, x_before)  # inputs untouched
    for u, v in zip(a1.weights, a2.weights):
        assert np.allclose(u, v, atol=1e-5)  # independent of batch size
    with pytest.raises(ProbeError, match="out of range"):
        atom_weights(sulfo_mlp, sulfo_fp, 5000)


def test_plot_and_frame(sulfo_fp, sulfo_mlp):
    import matplotlib

    matplotlib.use("Agg")
    maps = atom_weights(sulfo_mlp, sulfo_fp, [0])
    ax = maps.plot(0)
    assert ax.images
    df = maps.to_frame()
    assert len(df) == sulfo_fp.molecules[0].GetNumAtoms() and set(df.element) >= {"S", "N", "O", "C"}

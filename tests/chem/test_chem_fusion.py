"""Fingerprint and descriptor modalities: shapes, valid ranges that hold the data, a fused model."""

import torch

from domains.chem.fusion import fingerprint_descriptor_model, fusion_features
from probe.certify import certify_fusion


def test_fusion_features_and_model():
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "O=C(O)c1ccccc1"]
    ff = fusion_features(smiles, n_bits=64)
    fp, de = ff.inputs["fingerprint"], ff.inputs["descriptors"]
    assert fp.shape == (5, 64) and de.shape == (5, len(ff.descriptor_names))
    for k, t in ff.inputs.items():
        lo, hi = ff.domain[k]
        assert (t >= lo - 1e-6).all() and (t <= hi + 1e-6).all()
    model = fingerprint_descriptor_model(64, de.shape[1], weights=(0.9, 0.1))
    with torch.no_grad():
        p = model(fp, de)
    assert torch.allclose(p.sum(1), torch.ones(5))
    # the descriptor branch weighs 0.1: replaced by anything, it moves p_y - p_j by at most 0.1
    free = certify_fusion(model, ff.inputs, unbounded="descriptors")
    clean = certify_fusion(model, ff.inputs)
    assert (free.margin >= clean.margin - 0.2 - 1e-6).all()

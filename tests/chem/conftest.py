import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("selfies")


@pytest.fixture(scope="session")
def sulfonamides():
    from domains.chem import datasets

    return datasets.sulfonamides()


@pytest.fixture(scope="session")
def sulfo_fp(sulfonamides):
    """Morgan bits (512) of the whole series."""
    from domains.chem.featurize import featurize

    return featurize(sulfonamides.set_index("name")["smiles"], kind="morgan", n_bits=512)


@pytest.fixture(scope="session")
def sulfo_mlp(sulfo_fp, sulfonamides):
    """A small network trained on the series' fingerprints (seconds)."""
    from domains.chem.models import fit_mlp

    return fit_mlp(sulfo_fp.X, sulfonamides["pIC50"].to_numpy(), hidden=32, epochs=25, seed=0)


@pytest.fixture(scope="session")
def sulfo_rf(sulfo_fp, sulfonamides):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=25, random_state=0, n_jobs=1).fit(
        sulfo_fp.X.numpy(), sulfonamides["pIC50"].to_numpy())


@pytest.fixture(scope="session")
def free_wilson_fit(sulfonamides):
    from domains.chem import datasets
    from domains.chem.freewilson import free_wilson

    return free_wilson(sulfonamides["smiles"], sulfonamides["pIC50"], datasets.sulfonamide_scaffold())


@pytest.fixture(scope="session")
def small_desc(sulfonamides):
    """Descriptors of 120 sulfonamides."""
    from domains.chem.featurize import featurize

    return featurize(sulfonamides["smiles"][:120], kind="descriptors")


def linear_model(n_features: int, weights: dict, names, bias: float = 6.0) -> torch.nn.Module:
    lin = torch.nn.Linear(n_features, 1)
    with torch.no_grad():
        lin.weight.zero_()
        for name, w in weights.items():
            lin.weight[0, list(names).index(name)] = w
        lin.bias.fill_(bias)
    return lin


@pytest.fixture
def make_linear():
    """Builds a torch model linear in named features: ``make_linear(F, {name: w}, names, bias)``."""
    return linear_model

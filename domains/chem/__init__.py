"""Molecules: which features and atoms a predicted property rests on.

SMILES/SDF in (RDKit), descriptor and Morgan-fingerprint features with the map from each
feature back to atoms, feature-space minimal perturbations under chemically possible bounds,
per-atom sensitivity drawn on the molecule, STONED-SELFIES counterfactuals, Free-Wilson
ground truth and real data that ships inside installed packages.
"""

from typing import TYPE_CHECKING

from probe.lazy import attach

if TYPE_CHECKING:  # these load on first use (probe.lazy), so that ``probe CMD --help`` stays fast
    from .atoms import AtomMaps, atom_contributions, atom_incidence, atom_weights, project_to_atoms
    from .counterfactuals import Counterfactuals, counterfactuals, stoned
    from .edits import graph_edits
    from .featurize import DEFAULT_DESCRIPTORS, Features, Featurizer, featurize
    from .filters import MoleculeFilters
    from .freewilson import FreeWilson, free_wilson, substituent_scores
    from .gsa import descriptor_model, descriptor_problem, descriptor_shapley, descriptor_sobol
    from .io import MoleculeSet, as_molecules, from_frame, read_sdf
    from .mpnn import fit_mpnn, load_mpnn, mpnn_atom_weights, mpnn_predict, readout_bias
    from .shifts import DescriptorShifts, Drop, descriptor_sensitivity, descriptor_shifts

__all__ = [
    "MoleculeSet", "as_molecules", "read_sdf", "from_frame",
    "featurize", "Featurizer", "Features", "DEFAULT_DESCRIPTORS",
    "atom_weights", "atom_incidence", "atom_contributions", "project_to_atoms", "AtomMaps",
    "Drop", "descriptor_shifts", "descriptor_sensitivity", "DescriptorShifts",
    "counterfactuals", "stoned", "Counterfactuals",
    "free_wilson", "substituent_scores", "FreeWilson",
    "descriptor_problem", "descriptor_model", "descriptor_sobol", "descriptor_shapley",
    "load_mpnn", "mpnn_predict", "mpnn_atom_weights", "fit_mpnn", "readout_bias",
    "MoleculeFilters", "graph_edits",
]

__getattr__, __dir__ = attach(
    __name__,
    submodules=[],
    submod_attrs={
        "atoms": ["AtomMaps", "atom_contributions", "atom_incidence", "atom_weights", "project_to_atoms"],
        "counterfactuals": ["Counterfactuals", "counterfactuals", "stoned"],
        "edits": ["graph_edits"],
        "featurize": ["DEFAULT_DESCRIPTORS", "Features", "Featurizer", "featurize"],
        "filters": ["MoleculeFilters"],
        "freewilson": ["FreeWilson", "free_wilson", "substituent_scores"],
        "gsa": ["descriptor_model", "descriptor_problem", "descriptor_shapley", "descriptor_sobol"],
        "io": ["MoleculeSet", "as_molecules", "from_frame", "read_sdf"],
        "mpnn": ["fit_mpnn", "load_mpnn", "mpnn_atom_weights", "mpnn_predict", "readout_bias"],
        "shifts": ["DescriptorShifts", "Drop", "descriptor_sensitivity", "descriptor_shifts"],
    },
)

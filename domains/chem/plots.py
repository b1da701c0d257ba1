"""Pictures of molecules: atom weights as similarity maps, counterfactual grids, descriptor shifts."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import Draw
from rdkit.Chem.Draw import SimilarityMaps, rdMolDraw2D

__all__ = ["atom_weights_png", "draw_atom_weights", "molecule_grid", "molecule_figure", "plot_shifts"]


def _as_mol(mol: object) -> Chem.Mol:
    return Chem.MolFromSmiles(mol) if isinstance(mol, str) else Chem.Mol(mol)


def atom_weights_png(mol: object, weights: Sequence[float], size: int = 350) -> bytes:
    """PNG of ``mol`` with per-atom ``weights`` drawn as an RDKit similarity map.

    Weights are scaled by their largest magnitude (as ``GetSimilarityMapFromWeights`` does);
    red contours mark atoms that raise the output, blue ones atoms that lower it.
    """
    m = _as_mol(mol)
    w = [float(v) for v in weights]
    if len(w) != m.GetNumAtoms():
        from probe.errors import ProbeError

        raise ProbeError(f"{len(w)} weights for a molecule with {m.GetNumAtoms()} atoms")
    if not np.any(w):
        w = [0.0] * len(w)
    d2d = rdMolDraw2D.MolDraw2DCairo(size, size)
    SimilarityMaps.GetSimilarityMapFromWeights(m, w, draw2d=d2d, colorMap="bwr", contourLines=6)
    d2d.FinishDrawing()
    return d2d.GetDrawingText()


def _png_to_array(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(png), format="png")


def draw_atom_weights(mol: object, weights: Sequence[float], ax: object = None, size: int = 350,
                      title: str | None = None, unit: str | None = None, colorbar: bool = True) -> object:
    """Draw a similarity map of ``weights`` on ``mol`` into a matplotlib axis, with its colour scale.

    The map's colours run from blue (``-max|w|``) to red (``+max|w|``), as RDKit scales them;
    the colour bar shows that range in the weights' units (``unit``, e.g. ``"pIC50"``).
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if ax is None:
        _, ax = plt.subplots(figsize=(3.8, 3.5))
    ax.imshow(_png_to_array(atom_weights_png(mol, weights, size)))
    ax.set_axis_off()
    if colorbar:
        top = float(np.max(np.abs(weights))) if len(weights) else 0.0
        sm = ScalarMappable(norm=Normalize(-top or -1.0, top or 1.0), cmap="bwr")
        cb = ax.figure.colorbar(sm, ax=ax, fraction=0.046, pad=0.02)
        cb.set_label(f"atom weight ({unit})" if unit else "atom weight (output units)", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=8, wrap=True)
    return ax


def molecule_figure(mols: Sequence[object], titles: Sequence[str], *, per_row: int = 4, size: int = 220,
                    title: str | None = None) -> object:
    """A matplotlib figure of molecules (RDKit depictions), one panel each with its title.

    Parameters
    ----------
    mols : sequence of SMILES or RDKit Mol
    titles : sequence of str
        One per molecule (what it is and what the model says, with units).
    per_row : int, default 4
    size : int, default 220
        Pixels of each depiction.
    title : str, optional
        The figure's title.

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    from probe.style import style

    n = len(mols)
    ncol = min(per_row, n) or 1
    nrow = max(1, -(-n // ncol))
    with style():
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.7 * nrow + 0.4), squeeze=False)
        for k, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if k < n:
                ax.imshow(np.asarray(Draw.MolToImage(_as_mol(mols[k]), size=(size, size))))
                ax.set_title(titles[k], fontsize=8)
        if title:
            fig.suptitle(title)
    return fig


def molecule_grid(mols: Sequence[object], legends: Sequence[str] | None = None, per_row: int = 4,
                  size: int = 220) -> object:
    """A PIL image of molecules in a grid (RDKit ``MolsToGridImage``)."""
    ms = [_as_mol(m) for m in mols]
    return Draw.MolsToGridImage(ms, molsPerRow=per_row, subImgSize=(size, size),
                                legends=list(legends) if legends is not None else None)


def plot_shifts(table: object, ax: object = None, top: int = 12) -> object:
    """Bar chart of the descriptor changes of a minimal feature perturbation (own units, labelled)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    t = table[table["change"] != 0].copy()
    t = t.reindex(t["change_std"].abs().sort_values(ascending=False).index)[:top][::-1]
    ax.barh(range(len(t)), t["change_std"], color=np.where(t["change_std"] >= 0, "tab:red", "tab:blue"))
    ax.set_yticks(range(len(t)), [f"{n}  {c:+.3g}" for n, c in zip(t["feature"], t["change"])])
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("change (standard deviations of the data)")
    ax.set_ylabel("descriptor, change in its own units")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="tab:red", label="raised"), Patch(color="tab:blue", label="lowered")],
              loc="best", fontsize=7)
    return ax

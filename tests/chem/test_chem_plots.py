"""Atom-map figures carry their colour scale, its unit and an unclipped title."""

import matplotlib
import numpy as np

matplotlib.use("Agg")


def test_atom_map_has_colour_scale_with_unit_and_title(sulfo_fp, sulfo_mlp):
    import matplotlib.pyplot as plt

    from domains.chem.atoms import atom_weights

    maps = atom_weights(sulfo_mlp, sulfo_fp, [0])
    fig, ax = plt.subplots(figsize=(3.9, 3.6))
    maps.plot(0, ax=ax, unit="pIC50", label="MLP")
    bars = [a for a in fig.axes if a is not ax]
    assert len(bars) == 1 and bars[0].get_ylabel() == "atom weight (pIC50)"
    top = float(np.abs(maps.weights[0]).max())
    assert np.allclose(bars[0].get_ylim(), (-top, top))  # the same symmetric range as RDKit's colours
    title = ax.get_title()
    assert title.startswith(f"MLP: {maps.names[0]}\n") and title.endswith(f"{maps.prediction[0]:.2f} pIC50")
    fig.canvas.draw()
    t = ax.title.get_window_extent()
    assert t.x0 >= 0 and t.x1 <= fig.bbox.width  # the title fits inside the figure
    plt.close(fig)

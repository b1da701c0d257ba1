"""Window figures: genome coordinates on the x axis, logo and ISM on one x axis, a legend entry for every
mark, no label drawn over another."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from domains.dna.plots import plot_logo, plot_window  # noqa: E402
from probe import ProbeError  # noqa: E402


@pytest.fixture
def window():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (60,), generator=g), 4).T.float()
    attr = torch.randn(4, 60, generator=g) * x
    ism = torch.randn(4, 60, generator=g) * (1 - x)
    # two sites side by side and three edits two bases apart: their labels would collide on one row
    sites = pd.DataFrame({"start": [10, 14], "end": [14, 18], "factor": ["FOS::JUN", "CEBPB"]})
    edits = [(30, "A", "C"), (32, "G", "T"), (34, "C", "A")]
    return x, attr, ism, sites, edits


def _texts(fig):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return [t.get_window_extent(r) for ax in fig.axes for t in ax.texts if t.get_text()]


def test_window_figure_shares_the_x_axis_in_genome_coordinates(window):
    x, attr, ism, sites, edits = window
    fig = plot_window(attr, ism, x, edits=edits, sites=sites, coordinates=("chr7", 1_000_000, "+"))
    logo, heat = fig.axes[0], fig.axes[1]
    fig.canvas.draw()
    assert logo.get_shared_x_axes().joined(logo, heat)
    a, b = logo.get_position(), heat.get_position()
    assert abs(a.x0 - b.x0) < 1e-3 and abs(a.x1 - b.x1) < 1e-3  # the panels line up
    labels = [s.get_text() for t, s in zip(heat.get_xticks(), heat.get_xticklabels()) if -0.5 <= t <= 59.5]
    assert labels and all(1_000_001 <= int(s.replace(",", "")) <= 1_000_060 for s in labels)
    assert heat.get_xlabel().startswith("chr7 (+ strand")
    for ax, want in ((logo, {"site", "minimal edit"}), (heat, {"site", "minimal edit (new base)", "reference base"})):
        assert {t.get_text() for t in ax.get_legend().get_texts()} == want
    boxes = _texts(fig)
    assert len(boxes) == 5
    assert not any(p.overlaps(q) for i, p in enumerate(boxes) for q in boxes[i + 1:])
    plt.close(fig)


def test_minus_strand_runs_backwards_and_bad_coordinates_are_refused(window):
    x, attr, *_ = window
    ax = plot_logo(attr, coordinates=("chr1", 100, "-"))
    ax.figure.canvas.draw()
    ticks = {round(t): int(s.get_text().replace(",", "")) for t, s in zip(ax.get_xticks(), ax.get_xticklabels())
             if -0.5 <= t <= 59.5}
    assert ticks and all(pos == 100 + 60 - i for i, pos in ticks.items())  # index 0 is the window's last genome base
    with pytest.raises(ProbeError, match="coordinates must be"):
        plot_logo(attr, coordinates=("chr1",))
    plt.close("all")

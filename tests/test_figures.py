"""The figure checker catches each defect on purpose-made figures and passes a good one; then every figure the
commands save, on their quick jobs, passes it."""

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import probe.cli  # noqa: E402
from probe import style  # noqa: E402
from probe.testing.figures import figure_problems, visible_texts  # noqa: E402


def _good(ax):
    ax.plot([0, 0.5, 1], [0, 0.4, 1], label="data")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("signal (V)")
    ax.set_title("a good figure")
    ax.legend()
    return ax


@pytest.fixture
def fig():
    with style.style():
        figure, ax = plt.subplots(figsize=(5, 3.5))
        _good(ax)
    yield figure
    plt.close(figure)


def test_a_good_figure_has_no_problems(fig):
    assert figure_problems(fig) == []


def test_a_missing_axis_label_is_named(fig):
    fig.axes[0].set_xlabel("")
    assert figure_problems(fig) == ["axes 0 ('a good figure') has no x label"]
    fig.axes[0].set_xlabel("time (s)")
    fig.axes[0].set_ylabel("  ")
    assert figure_problems(fig) == ["axes 0 ('a good figure') has no y label"]


def test_axes_turned_off_and_stacked_panels_need_no_labels_of_their_own():
    with style.style():
        figure, (top, bottom, off) = plt.subplots(3, 1, sharex=True, figsize=(5, 6))
    _good(top)
    _good(bottom)
    top.set_xlabel("")          # its neighbour below labels the shared x axis
    off.imshow(np.zeros((4, 4, 3)))  # an RGB picture needs no colour bar
    off.set_axis_off()
    assert figure_problems(figure) == []
    bottom.set_xlabel("")        # now nobody labels it
    problems = figure_problems(figure)
    assert problems == ["axes 0 ('a good figure') has no x label", "axes 1 ('a good figure') has no x label"]
    plt.close(figure)


def test_a_colour_bar_needs_its_label_and_colour_that_carries_a_value_needs_a_colour_bar(fig):
    ax = fig.axes[0]
    image = ax.imshow(np.arange(6.0).reshape(2, 3), extent=(0, 1, 0, 1), aspect="auto")
    assert figure_problems(fig) == ["axes 0 ('a good figure'): colour shows values but has no colour bar"]
    bar = fig.colorbar(image, ax=ax)
    assert figure_problems(fig) == ["colour bar 1 has no label (what the colour means, with its unit)"]
    bar.set_label("change (logit)")
    assert figure_problems(fig) == []


def test_a_colour_bar_inset_into_its_axes_is_checked_too(fig):
    ax = fig.axes[0]
    image = ax.imshow(np.arange(6.0).reshape(2, 3), extent=(0, 1, 0, 1), aspect="auto")
    fig.colorbar(image, cax=ax.inset_axes([1.02, 0.0, 0.03, 1.0]))
    assert figure_problems(fig) == ["colour bar 1 has no label (what the colour means, with its unit)"]


def test_a_figure_without_any_title_is_named(fig):
    fig.axes[0].set_title("")
    assert figure_problems(fig) == ["figure has no title (neither a suptitle nor an axes title)"]
    fig.suptitle("the figure's title")
    assert figure_problems(fig) == []


def test_an_empty_legend_entry_is_named(fig):
    ax = fig.axes[0]
    ax.plot([0, 1], [1, 0], label=" ")
    ax.legend()
    assert figure_problems(fig) == ["legend of axes 0 ('a good figure'): entry 1 has an empty label"]
    fig.legend(handles=[ax.lines[0]], labels=[""])
    assert "figure legend 0: entry 0 has an empty label" in figure_problems(fig)


def test_overlapping_texts_are_named(fig):
    ax = fig.axes[0]
    ax.text(0.5, 0.5, "motif TBP", fontsize=12)
    ax.text(0.52, 0.5, "edit A>G", fontsize=12)
    assert figure_problems(fig) == ["text 'motif TBP' overlaps text 'edit A>G'"]


def test_a_label_printed_over_the_title_is_named(fig):
    ax = fig.axes[0]
    ax.annotate("TBP", xy=(0.5, 1.0), xycoords="axes fraction", xytext=(0, 4), textcoords="offset points",
                ha="center", va="bottom", fontsize=12)
    (problem,) = figure_problems(fig)
    assert problem in ("text 'a good figure' overlaps text 'TBP'", "text 'TBP' overlaps text 'a good figure'")


def test_crowded_tick_labels_of_one_axis_are_named(fig):
    ax = fig.axes[0]
    ax.set_xticks(np.linspace(0, 1, 8), [f"category {k}" for k in range(8)])
    problems = figure_problems(fig)
    assert problems and all("overlaps text 'category" in p for p in problems)
    assert "text 'category 0' overlaps text 'category 1'" in problems


def test_text_leaving_the_canvas_is_named(fig):
    fig.text(0.98, 0.5, "clipped title")
    assert figure_problems(fig) == ["text 'clipped title' leaves the canvas"]


def test_hidden_empty_and_out_of_view_texts_are_not_checked(fig):
    ax = fig.axes[0]
    ax.text(0.5, 0.5, "shown")
    ax.text(0.5, 0.5, "")                               # empty
    ax.text(0.5, 0.5, "hidden").set_visible(False)      # invisible
    ax.text(0.5, 0.5, "transparent", alpha=0.0)         # fully transparent
    ax.annotate("", xy=(0.2, 0.2), xytext=(0.5, 0.5), arrowprops={"arrowstyle": "->"})  # an arrow, no text
    ax.set_xticks([0.0, 0.5, 1.0, 40.0])                # the tick at 40 is outside the view: not drawn
    ax.set_xlim(0, 1)
    hidden = ax.legend(["x"], loc="center")
    ax.add_artist(hidden)
    hidden.set_visible(False)
    _good(ax)
    assert figure_problems(fig) == []
    texts = [t.get_text() for t in visible_texts(fig)]
    assert "shown" in texts and "40" not in texts and "hidden" not in texts and "transparent" not in texts


def test_save_lays_out_and_writes_at_the_fixed_resolution(tmp_path):
    figure, ax = plt.subplots(figsize=(4, 3))
    _good(ax)
    figure.suptitle("a title that needs its room")
    assert figure.get_layout_engine() is None
    path = style.save(figure, tmp_path / "f.png", close=False)
    assert figure.get_layout_engine() is not None and figure_problems(figure) == []
    image = plt.imread(path)
    assert image.shape[:2] == (3 * style.DPI, 4 * style.DPI)
    plt.close(figure)


def test_style_helpers_label_with_units_and_dates(fig):
    ax = fig.axes[0]
    assert style.with_unit("energy", "eV") == "energy (eV)" and style.with_unit("R_t", None) == "R_t"
    image = ax.imshow(np.ones((2, 2)), extent=(0, 1, 0, 1))
    assert style.colorbar(image, ax, "change", "logit").ax.get_ylabel() == "change (logit)"
    with style.style():
        figure, date_ax = plt.subplots()
    date_ax.plot(np.arange("2009-04-27", "2009-05-29", dtype="datetime64[D]"), np.arange(32))
    style.date_axis(date_ax)
    date_ax.set_ylabel("cases per day")
    date_ax.set_title("dates")
    assert date_ax.get_xlabel() == "date" and figure_problems(figure) == []
    assert any("May" in t.get_text() for t in visible_texts(figure))
    plt.close(figure)


COMMANDS = ["core", "dna", "chem", "epi", "md"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_figure_a_command_saves_passes_the_checker(name, tmp_path, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        available = probe.cli.discover()
    assert name in available, f"probe {name} is not registered: is the package installed with its extra?"
    seen: dict[str, list[str]] = {}
    savefig = Figure.savefig

    def checked(self, fname, *args, **kwargs):
        seen[str(fname)] = figure_problems(self)
        return savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    assert probe.cli.main([name, "--quick", "--out", str(tmp_path / name)]) == 0  # one torch thread (conftest)
    assert seen, f"probe {name} --quick saved no figure"
    problems = {f.rsplit("/", 1)[-1]: p for f, p in seen.items() if p}
    assert problems == {}
    assert all(path.endswith((".png", ".svg")) for path in seen)


def _results():
    import torch

    from probe.results import AttackResult, Attribution, RobustnessCurve

    d = torch.tensor([0.1, 0.3, float("inf"), 0.2])
    x = torch.zeros(4, 3)
    attack = AttackResult(x_adv=x, delta=x, success=torch.isfinite(d), distance=d,
                          queries=torch.ones(4, dtype=torch.int64), norm="l2", method="fmn")
    eps = torch.tensor([0.0, 0.1, 0.2])
    curve = RobustnessCurve(eps=eps, empirical=torch.tensor([0.9, 0.6, 0.3]), certified=torch.tensor([0.9, 0.4, 0.1]),
                            norm="linf", clean=0.9, method="pgd+crown")
    return {"attack": attack.plot, "curve": curve.plot,
            "bars": Attribution(values=torch.randn(2, 5), method="gradient").plot,
            "map": Attribution(values=torch.randn(2, 4, 12), method="ism").plot}


@pytest.mark.parametrize("kind", ["attack", "curve", "bars", "map"])
def test_result_plots_pass_the_checker(kind):
    with style.style():
        ax = _results()[kind]()
    assert figure_problems(ax.figure) == []
    plt.close(ax.figure)


def test_a_long_dna_window_is_zoomed_to_readable_letters_beside_an_overview():
    import pandas as pd
    import torch

    from domains.dna.plots import plot_window

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (300,), generator=g), 4).T.float()
    attr = 0.1 * torch.randn(4, 300, generator=g) * x
    attr[:, 200:210] *= 30  # the signal the zoom must find
    ism = torch.randn(4, 300, generator=g) * (1 - x)
    sites = pd.DataFrame({"start": [20, 201], "end": [28, 209], "factor": ["SP1", "TBP"]})
    fig = plot_window(attr, ism, x, edits=[(204, "A", "G")], sites=sites, title="seq: a 300 bp window",
                      unit="logit", max_letters=80)
    overview, logo, heat = fig.axes[:3]
    assert overview.get_xlim() == (-0.5, 299.5)
    lo, hi = logo.get_xlim()
    assert hi - lo == 80 and lo <= 200 and 210 <= hi and logo.get_shared_x_axes().joined(logo, heat)
    assert [t.get_text() for t in logo.texts] == ["TBP", "A>G"]  # SP1 lies outside the zoom
    assert fig.get_suptitle() == "seq: a 300 bp window" and heat.get_ylabel() == "base substituted in"
    assert figure_problems(fig) == []
    plt.close(fig)


def test_curves_told_apart_only_by_colour_need_a_legend(fig):
    ax = fig.axes[0]
    ax.get_legend().remove()
    ax.axhline(0.5, color="grey")  # a reference line is no curve
    assert figure_problems(fig) == []
    ax.plot([0, 0.5, 1], [1, 0.2, 0], color="tab:orange")
    assert figure_problems(fig) == ["axes 0 ('a good figure') has curves of 2 colours but no legend"]
    fig.legend(handles=ax.lines[:1], loc="outside lower center")
    assert figure_problems(fig) == []

"""report.html: every run writes one, it is escaped and self-contained, and each opens cleanly in Chromium."""

import contextlib
import io
import json
import os
import re
from importlib.metadata import version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import probe.cli  # noqa: E402
from probe.report import extra_packages, package_versions, write_report  # noqa: E402
from probe.testing.browser import find_chromium, open_page  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        if os.environ.get("PROBE_NO_BROWSER") == "1":
            pytest.skip("PROBE_NO_BROWSER=1: the browser checks are turned off")
        pytest.fail("the report tests need headless Chromium: install it (Debian: apt-get install chromium; .ci/run "
                    "does) or point PROBE_CHROMIUM at it; set PROBE_NO_BROWSER=1 to skip them knowingly")
    return exe


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``probe demo --quick`` once for the module: (output folder, what it said on stderr)."""
    out = tmp_path_factory.mktemp("demo")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert probe.cli.main(["demo", "--quick", "--out", str(out)]) == 0
    return out, err.getvalue()


def _figures(folder: Path) -> list[str]:
    """The figures of a run folder, one per figure saved in several formats."""
    return sorted({p.stem for p in folder.iterdir() if p.suffix in (".png", ".svg")})


def test_every_run_writes_a_report_and_says_where(demo):
    out, err = demo
    commands = sorted(probe.cli.discover())
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == commands
    for name in commands:
        assert (out / name / "report.html").exists(), name
    assert f"report: {out}/report.html" in err
    index = (out / "report.html").read_text()
    for name in commands:
        assert f'href="{name}/report.html"' in index


def test_domain_reports_hold_every_figure_and_table(demo):
    out, _ = demo
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        page = (folder / "report.html").read_text()
        summary = json.loads((folder / "summary.json").read_text())
        assert page.count('src="data:image/') == len(_figures(folder)), folder.name
        for table in folder.glob("*.csv"):
            assert f'href="{table.name}"' in page, table.name
        assert f"<td>{version('torch')}</td>" in page
        assert re.search(rf"<code>probe {folder.name} --out \S+ --quick</code>", page), folder.name
        assert f"{summary['seconds']:.4g}" in page
        assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained


def test_every_report_opens_cleanly_in_chromium(demo, chromium, tmp_path):
    out, _ = demo
    pages = [out / "report.html", *sorted(out.glob("*/report.html"))]
    for page in pages:
        name = page.parent.name if page.parent != out else "index"
        check = open_page(page, screenshot=tmp_path / f"{name}.png", executable=chromium)
        assert check.console_errors == [], name
        assert check.broken_images == [], name
        if page.parent != out:
            assert len(check.images) == len(_figures(page.parent)), name
            assert check.title == f"probe {name}"
        else:  # the index shows each command's first figure
            assert len(check.images) == sum(bool(_figures(d)) for d in out.iterdir() if d.is_dir())
        assert all(img["naturalWidth"] > 100 for img in check.images), name
        shot = check.screenshot.read_bytes()
        assert shot.startswith(PNG) and len(shot) > 20_000, name


def test_the_browser_check_sees_broken_images_and_console_errors(chromium, tmp_path):
    # the same check on a page that is broken three ways: it must report each of them
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>broken</title></head><body>'
                    '<img alt="corrupt" src="data:image/png;base64,AAAA">'
                    '<img alt="missing" src="missing.png">'
                    '<script>console.error("boom")</script></body></html>')
    check = open_page(page, executable=chromium)
    assert sorted(img["alt"] for img in check.broken_images) == ["corrupt", "missing"]
    assert any("boom" in e for e in check.console_errors)
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in check.console_errors), check.console_errors


def _small_run(folder: Path) -> Path:
    folder.mkdir()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(folder / "a.png", dpi=50)
    fig.savefig(folder / "b.svg")
    fig.savefig(folder / "c.png", dpi=50)
    fig.savefig(folder / "c.svg")  # the same figure twice: shown once, the other format linked
    plt.close(fig)
    rows = "\n".join(f"{i},{i / 3},<script>alert({i})</script>" for i in range(25))
    (folder / "a&b.csv").write_text("step,value,note\n" + rows + "\n")
    (folder / "a&b.parquet").write_bytes(b"PAR1")
    (folder / "store.sqlite").write_bytes(b"\0" * 10)
    return folder


def test_write_report_escapes_and_embeds(tmp_path):
    folder = _small_run(tmp_path / "run")
    summary = {"name": "<img src=x onerror=alert(1)>", "value": 1 / 3, "nested": {"a": [1, 2, 3]},
               "figure": "b.svg"}
    path = write_report(folder, title="t <b>", summary=summary, params={"out": folder, "n": None},
                        command=["probe", "x", "--flag", "a b"], max_rows=5)
    page = path.read_text()
    assert "<script" not in page and "<img src=x" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count('src="data:image/png;base64,') == 2 and page.count('src="data:image/svg+xml;base64,') == 1
    # the summary names b.svg, so it comes first; c.svg is linked beside c.png, not embedded again
    assert page.index("data:image/svg+xml") < page.index("data:image/png")
    assert '<a href="c.png">c.png</a>, <a href="c.svg">c.svg</a>' in page
    assert 'href="a&amp;b.csv"' in page and "25 rows, the first 5 shown" in page
    assert 'also as <a href="a&amp;b.parquet">' in page and "Other files</a> (1)" in page
    assert "<td>0.3333</td>" in page  # CSV floats to 4 significant digits
    assert 'href="store.sqlite"' in page
    assert "<code>probe x --flag &#39;a b&#39;</code>" in page


def test_write_report_reads_summary_json_and_rejects_a_missing_folder(tmp_path):
    folder = _small_run(tmp_path / "run")
    (folder / "summary.json").write_text(json.dumps({"answer": 42}))
    page = write_report(folder, title="t").read_text()
    assert "<th scope=\"row\">answer</th><td>42</td>" in page
    (folder / "summary.json").write_text("{not json")
    with pytest.raises(probe.ProbeError, match="summary.json"):
        write_report(folder, title="t")
    with pytest.raises(probe.ProbeError, match="does not exist"):
        write_report(tmp_path / "nowhere", title="t")


def test_package_versions_come_from_metadata():
    got = package_versions(["torch", "numpy", "torch", "surely-not-installed-pkg"])
    assert got == {"torch": version("torch"), "numpy": version("numpy"), "surely-not-installed-pkg": "not installed"}
    assert "biopython" in extra_packages("dna")
    assert {"rdkit", "chemprop"} <= set(extra_packages("chemprop"))  # through probe[chem]
    assert extra_packages("no-such-extra") == []

"""The HTML report in a real headless browser: two CoIN-Synth runs -> `coin report` -> screenshot.

Needs Debian's chromium. When it is missing and we are root with apt-get (CI, a fresh
machine), the test setup installs it; elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from PIL import Image

from coin.cli import main
from coin.config_load import from_dict
from coin.api import run

pytestmark = pytest.mark.slow


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=300, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True, timeout=600, env=env)
    except (subprocess.SubprocessError, OSError):
        return None
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium():
    path = _chromium()
    if path is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    return path


def _render(chromium: str, page, out_png, tmp_path, dump: bool = False) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1200,2400"]
    action = ["--dump-dom"] if dump else [f"--screenshot={out_png}"]
    proc = subprocess.run([chromium, *flags, *action, page.as_uri()], capture_output=True, timeout=120, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_report_html_renders_in_a_browser(chromium, tmp_path, micro_config):
    runs = []
    for seed in (0, 1):
        micro_config["seed"] = seed
        out = tmp_path / f"micro-s{seed}"
        run(from_dict(micro_config), out, progress=False, log=lambda *a: None)
        runs.append(out)
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "cmp")]) == 0
    cmp_page = tmp_path / "cmp" / "report.html"
    dom = _render(chromium, cmp_page, None, tmp_path, dump=True)
    assert 'id="comparison"' in dom and "micro" in dom
    assert "±" in dom  # two seeds of one config are one row with mean ± std

    run_page = runs[0] / "report.html"
    dom = _render(chromium, run_page, None, tmp_path, dump=True)
    assert 'id="heatmap"' in dom and 'id="metrics"' in dom
    shot = tmp_path / "run.png"
    _render(chromium, run_page, shot, tmp_path)
    img = Image.open(shot).convert("L")
    assert img.size == (1200, 2400)
    lo, hi = img.getextrema()
    assert hi - lo > 100, "the screenshot is blank"
    # the heatmap is an embedded image: the page has more than a few distinct grey levels
    small = img.resize((300, 600))
    assert len({small.getpixel((x, y)) for x in range(300) for y in range(600)}) > 20
    _loss_figure_decodes(chromium, runs[0], tmp_path)
    _loss_figure_decodes(chromium, tmp_path / "cmp", tmp_path)


def _loss_figure_decodes(chromium: str, folder, tmp_path) -> None:
    """The browser decodes the embedded loss figure to the PNG's own size (a broken image has width 0)."""
    probe = ("<script>window.addEventListener('load', () => { const i = document.getElementById('loss'); "
             "document.body.setAttribute('data-loss', i ? i.complete + ':' + i.naturalWidth + 'x' + i.naturalHeight "
             ": 'missing'); });</script></body>")
    page = tmp_path / f"probe-{folder.name}.html"
    page.write_text((folder / "report.html").read_text().replace("</body>", probe))
    dom = _render(chromium, page, None, tmp_path, dump=True)
    w, h = Image.open(folder / "loss.png").size
    assert f'data-loss="true:{w}x{h}"' in dom


def _page_width(chromium: str, page, tmp_path, width: int) -> int:
    """The page's laid-out width (``scrollWidth``) in a ``width``-pixel window, read back from the DOM."""
    probe = tmp_path / f"probe-{page.parent.name}.html"
    probe.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "<script>document.title = 'W' + document.documentElement.scrollWidth;</script></body>"),
        encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             f"--user-data-dir={tmp_path / 'chrome-profile'}", f"--window-size={width},1600", "--dump-dom"]
    proc = subprocess.run([chromium, *flags, probe.as_uri()], capture_output=True, timeout=120, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import re

    return int(re.search(r"<title>W(\d+)</title>", proc.stdout).group(1))


def test_the_comparison_page_fits_1280_pixels(chromium, tmp_path):
    """Eight tasks, six configurations with long names: the comparison's wide tables scroll in their own box,
    the page stays within a 1280-pixel window (a screenshot at that width shows the report, not a blank)."""
    from test_report import RANDOM_ORDER, _t8_matrix, _write_run

    runs = [_write_run(tmp_path / f"configuration-with-a-long-name-{k}-s{seed}", RANDOM_ORDER,
                       _t8_matrix(2.0 * seed + k), seed=seed, method=f"method-{k}", config_extra={},
                       with_metrics=True, zero_shot=[1.0] * 8)
            for k in range(6) for seed in (0, 1)]
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    page = tmp_path / "cmp" / "report.html"
    assert _page_width(chromium, page, tmp_path, 1280) <= 1280
    shot = tmp_path / "cmp.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1280,1600", f"--screenshot={shot}"]
    assert subprocess.run([chromium, *flags, page.as_uri()], capture_output=True, timeout=120).returncode == 0
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 1600) and img.getextrema()[1] - img.getextrema()[0] > 100

"""The demo's report in a real browser: headless Chromium (Debian's `chromium` package; CI installs it)
opens the page from disk, walks the query picker, and the page's self-test reports missing images
and errors in its title; a screenshot must show something."""
import os
import re
import shutil
import subprocess

import pytest

pytest.importorskip("torch", reason="the demo needs torch: pip install 'hashindex[encoder]'")
pytest.importorskip("nibabel", reason="the demo needs the data extra: pip install 'hashindex[data]'")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--allow-file-access-from-files",
         "--hide-scrollbars", "--no-first-run"]


@pytest.fixture(scope="module")
def report(tmp_path_factory, phantom_root):
    from test_cbir import _tiny_checkpoint

    from hashindex.encoder.demo import DemoConfig, run_demo

    base = tmp_path_factory.mktemp("report")
    checkpoint = _tiny_checkpoint(base, phantom_root)
    config = DemoConfig(cases=3, seed=1, spacing=4.0, examples=8, max_queries=50)
    page = run_demo(base / "out", cache=base / "cache", config=config, checkpoint=checkpoint, log=lambda _: None)
    return page


def test_report_links_and_content(report):
    import json

    text = report.read_text()
    assert "http://" not in text and "https://" not in text  # nothing from elsewhere: opens from disk
    for src in re.findall(r'src="([^"]+)"', text):
        assert (report.parent / src).is_file(), src
    assert (report.parent / "evaluation.json").is_file() and (report.parent / "examples.json").is_file()
    examples = json.loads((report.parent / "examples.json").read_text())
    assert len(examples) == 8 and len({e["case"] for e in examples}) >= 2
    assert {e["tumour"] for e in examples} == {0, 1}  # tumour and tumour-free queries
    for e in examples:
        assert set(e["modes"]) == {"normal", "abnormal", "both", "synthetic"}
        for hits in e["modes"].values():
            cases = [h["case"] for h in hits]
            assert e["case"] not in cases and len(set(cases)) == len(cases)  # one hit per other patient
    assert text.count('<section class="query"') == 8 and "Tumour labels:" in text


def test_report_in_headless_chromium(report, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: .ci/run installs chromium")
        pytest.skip("no chromium here: apt-get install chromium (CI installs it)")
    url = report.resolve().as_uri()
    run = subprocess.run([CHROMIUM, *FLAGS, "--virtual-time-budget=20000", "--enable-logging=stderr", "--v=0",
                          "--dump-dom", url + "#selftest"], capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", run.stdout)
    assert title, run.stderr[-2000:]
    assert title.group(1).startswith("SELFTEST OK"), title.group(1)
    assert "queries=8 shown=8" in title.group(1) and "broken=0" in title.group(1)
    assert "Uncaught" not in run.stderr, run.stderr[-2000:]
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, "--window-size=1280,1600", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.pyplot as plt

    pixels = plt.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.std() > 0.05  # not blank

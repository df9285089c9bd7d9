"""Every Python and JSON block of the README and of the pages under docs/ runs: a page's Python blocks
in order, in one namespace (as a reader pastes them), in a fresh folder that holds what the pages
say to make first (`phantoms`: a few small phantom cases). The sharded-index page starts Ray, so it
runs in a child process inside a network namespace of its own (nothing listens beyond loopback)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NEEDS = {  # what a block needs installed, by what it imports
    "hashindex.encoder": ("torch", "nibabel", "scipy"),
    "hashindex import distributed": ("ray",),
}


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


PYTHON = [(page, blocks(page, "python")) for page in PAGES if blocks(page, "python")]


def _missing(code: str) -> list[str]:
    import importlib.util

    return [m for key, modules in NEEDS.items() if key in code for m in modules if importlib.util.find_spec(m) is None]


def test_the_pages_have_code_to_run():
    names = {page.name for page, _ in PYTHON}
    assert {"README.md", "api.md", "cbir.md", "encoder.md", "distributed.md", "archive.md"} <= names


@pytest.mark.parametrize("page,codes", PYTHON, ids=[page.name for page, _ in PYTHON])
def test_python_blocks_run(page, codes, tmp_path, monkeypatch, request):
    code = "\n".join(codes)
    missing = _missing(code)
    if missing:
        pytest.skip(f"{page.name}: needs {', '.join(missing)}, which this install lacks")
    if '"phantoms"' in code:
        shutil.copytree(request.getfixturevalue("phantom_root"), tmp_path / "phantoms")
    monkeypatch.chdir(tmp_path)
    if "start_local_ray" in code:
        _run_in_own_network(code, tmp_path)
        return
    for n, block in enumerate(codes):
        namespace = globals_for(page)
        try:
            exec(compile(block, f"{page.name} block {n + 1}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{page.name}, Python block {n + 1} raised {type(exc).__name__}: {exc}\n{block}")


_NAMESPACES: dict = {}


def globals_for(page: Path) -> dict:
    """One namespace per page and test run: later blocks use what earlier ones made."""
    return _NAMESPACES.setdefault(page, {"__name__": f"docs:{page.name}"})


def _run_in_own_network(code: str, folder: Path) -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) to keep Ray on loopback")
    script = folder / "page.py"
    script.write_text(code + "\nimport ray\nray.shutdown()\n")
    out = subprocess.run(["unshare", "--net", "sh", "-c", f"ip link set lo up && {sys.executable} {script}"],
                         capture_output=True, text=True, cwd=folder, timeout=300,
                         env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    if out.returncode and "unshare failed" in out.stderr:
        pytest.skip(f"no privilege for a network namespace here: {out.stderr.strip()}")
    assert out.returncode == 0, f"{out.stdout[-2000:]}\n{out.stderr[-4000:]}"


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "json")], ids=lambda p: p.name)
def test_json_blocks_are_layouts_the_loader_takes(page):
    pytest.importorskip("nibabel", reason="layouts belong to the data extra: pip install '.[data]'")
    from hashindex.encoder.data.layouts import Layout

    for block in blocks(page, "json"):
        spec = json.loads(block)
        layout = Layout.from_dict(spec)
        assert layout.name == spec["name"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = [t for t in re.findall(r"\]\(([^)#\s]+)", page.read_text())
              if not t.startswith(("http://", "https://")) and not (page.parent / t).exists()]
    assert not broken, broken


def _cited_sections() -> list[tuple[str, str, str]]:
    """(file, RESULTS or CHANGELOG, section name) for each section a comment, docstring or page cites
    as `RESULTS.md, "Name"`, however its comment lines break."""
    found = []
    sources = [p for folder in ("csrc", "hashindex", "encoder", "benchmarks", "docs", "scripts", "fuzz")
               for p in sorted((ROOT / folder).rglob("*")) if p.suffix in (".py", ".h", ".cpp", ".md", ".sh")]
    for path in [ROOT / "README.md", *sources]:
        text = re.sub(r"\n\s*(?://|#|\*)?\s*", " ", path.read_text(errors="replace"))  # comment lines joined
        for doc, name in re.findall(r'\b(RESULTS|CHANGELOG)(?:\.md)?,\s*"([^"]+)"', text):
            found.append((str(path.relative_to(ROOT)), doc, name))
    return found


def test_cited_sections_exist():
    """A figure lives in RESULTS.md or the CHANGELOG and the code names the section: a renamed or
    dropped section would leave the comment pointing at nothing."""
    headings = {doc: [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
                for doc, path in (("RESULTS", ROOT / "benchmarks" / "RESULTS.md"), ("CHANGELOG", ROOT / "CHANGELOG.md"))}
    cited = _cited_sections()
    assert len(cited) > 20  # the comments of csrc/ cite dozens
    missing = [c for c in cited if not any(c[2] in h for h in headings[c[1]])]
    assert not missing, missing

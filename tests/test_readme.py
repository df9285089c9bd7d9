"""Every shell command the README and the pages under docs/ show: each ``hashindex`` line parses with
the installed command (its verbs, flags and choices exist), each extra it installs exists, each script
it runs answers ``--help``, and the demo's own commands (``query``, ``montage``) run against a small
demo built the same way, so none of them can go stale unnoticed. (tests/test_docs.py runs their code.)"""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shell_commands() -> list[str]:
    """The commands of the pages' bash blocks: continuation lines joined, comments dropped, each
    `&&`-chained part on its own."""
    blocks = [b for page in PAGES if page.is_file() for b in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split("&&")]
    return commands


COMMANDS = shell_commands()
VERBS = [c for c in COMMANDS if c.startswith("hashindex ")]
SCRIPTS = [c for c in COMMANDS if c.startswith(("python benchmarks/", "python -m benchmarks"))]
INSTALLS = [c for c in COMMANDS if c.startswith("pip install")]


def test_the_readme_has_the_two_quick_start_commands():
    assert "hashindex demo" in VERBS and "pytest" in COMMANDS
    assert len(VERBS) >= 10 and SCRIPTS and INSTALLS


@pytest.mark.parametrize("command", VERBS)
def test_every_hashindex_command_parses(command, capsys):
    from hashindex.cli import _parser

    argv = shlex.split(command)[1:]
    verbs = next(a for a in _parser()._actions if a.dest == "command").choices
    if argv[0] not in verbs:
        pytest.skip(f"`hashindex {argv[0]}` comes with the encoder: pip install '.[encoder]'")
    try:
        _parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README command does not parse ({exc.code}): {command}\n{capsys.readouterr().err}")


@pytest.mark.parametrize("command", INSTALLS)
def test_every_extra_installed_exists(command):
    from importlib.metadata import metadata

    extras = metadata("hashindex").get_all("Provides-Extra") or []
    for wanted in re.findall(r'"\.\[([^\]]+)\]"', command):
        assert set(wanted.split(",")) <= set(extras), command


@pytest.mark.parametrize("command", SCRIPTS)
def test_every_benchmark_script_answers_help(command):
    args = shlex.split(command)[1:3] if " -m " in command else shlex.split(command)[1:2]
    assert (ROOT / args[-1]).exists(), command
    # from the root, as a user runs it; the script's folder, not the root, starts sys.path
    out = subprocess.run([sys.executable, *args, "--help"], capture_output=True, text=True, cwd=ROOT)
    missing = (re.search(r"No module named '(numba|matplotlib|torch|nibabel|scipy|nilearn|ray|faiss)'", out.stderr)
               or re.search(r"(\S+) is required: pip install", out.stderr))
    if missing:
        pytest.skip(f"{command}: needs {missing.group(1)}, which this install lacks (the bench, encoder or "
                    "distributed extra)")
    assert out.returncode == 0, f"{command}\n{out.stderr[-2000:]}"


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory, request):
    """A demo as `hashindex demo` makes it (seed 0, 2 mm phantoms), with 4 cases and the tiny model."""
    for module in ("torch", "scipy", "nibabel"):
        pytest.importorskip(module, reason="the demo needs the encoder extra: pip install 'hashindex[encoder]'")
    from test_cbir import _tiny_checkpoint

    phantom_root = request.getfixturevalue("phantom_root")
    from hashindex.encoder.demo import DemoConfig, run_demo

    root = tmp_path_factory.mktemp("readme")
    checkpoint = _tiny_checkpoint(root, phantom_root)
    run_demo(root / "hashindex-demo", cache=root / "cache", checkpoint=checkpoint, log=lambda _: None,
             config=DemoConfig(cases=4, examples=2, max_queries=40))
    return root, checkpoint


@pytest.mark.parametrize("command", [c for c in VERBS if c.split()[1] in ("query", "montage")])
def test_the_demo_commands_run_on_a_demo(command, small_demo, monkeypatch, capsys):
    """The README's query and montage lines, with the demo's folders where the README has them."""
    from hashindex.cli import main

    root, checkpoint = small_demo
    monkeypatch.chdir(root)
    monkeypatch.setenv("HASHINDEX_CACHE", str(root / "cache"))
    line = command.replace("~/.cache/hashindex", str(root / "cache"))
    if " montage " in f" {line} ":
        line = line.replace("phantoms/", "cache/phantoms-seed0-2mm/")
    argv = shlex.split(line)[1:]
    if argv[0] == "query":
        argv += ["--checkpoint", str(checkpoint)]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    if argv[0] == "query":
        cases = [h.split("case=")[1].split()[0] for h in out.strip().splitlines()]
        assert cases
        if "--per-patient" not in argv:
            assert len(cases) == len(set(cases))  # one hit per patient by default

"""hashindex/_core.pyi, written by hand, against the compiled module: the same functions, classes,
methods and properties, with the same parameter names and defaults, so mypy checks the Python layer
against what the core really takes."""
import ast
import inspect
import re
from pathlib import Path

import pytest

import hashindex
from hashindex import _core

STUB = Path(hashindex.__file__).with_name("_core.pyi")
DUNDERS = {"__init__", "__len__", "__contains__", "__getstate__", "__setstate__"}


def _stub() -> dict:
    """{name: params} for functions; {class: {member: params or 'property'}} for classes."""
    tree = ast.parse(STUB.read_text())
    out: dict = {}
    private: dict = {}  # stub-only bases (_Storage: what every kind binds), not in the module

    def params(fn: ast.FunctionDef) -> list[tuple[str, bool]]:
        args = fn.args.args
        defaults = [False] * (len(args) - len(fn.args.defaults)) + [True] * len(fn.args.defaults)
        return [(a.arg, d) for a, d in zip(args, defaults) if a.arg not in ("self", "cls")]

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = params(node)
        elif isinstance(node, ast.ClassDef):
            members = {m: v for base in node.bases if isinstance(base, ast.Name) for m, v in private.get(base.id, {}).items()}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    if any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in item.decorator_list):
                        continue  # a property's setter: the same member as its getter
                    prop = any(isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list)
                    members[item.name] = "property" if prop else params(item)
            (private if node.name.startswith("_") else out)[node.name] = members
    return out


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[(" and 1 or 0
        depth -= ch in "])" and 1 or 0
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur] if cur.strip() else parts


def _compiled_params(fn) -> list[tuple[str, bool]] | None:
    """Parameter names and whether each has a default, from pybind11's signature line."""
    doc = (fn.__doc__ or "").strip()
    match = re.match(r"\w+\((.*)\) ->", doc.splitlines()[0] if doc else "")
    if not match:
        return None  # overloaded or undocumented
    out = []
    for part in _split_top(match.group(1)):
        name = part.split(":")[0].strip()
        if name and name != "self":
            out.append((name, "=" in part.split(":", 1)[1] if ":" in part else "=" in part))
    return out


def _public(cls) -> dict:
    members = {}
    for name, value in vars(cls).items():
        if name.startswith("_") and name not in DUNDERS:
            continue
        if name in ("__getstate__", "__setstate__"):
            continue
        if name == "__init__" and (value.__doc__ or "").startswith("Initialize self"):
            continue  # no constructor bound: made by a factory (map_file)
        members[name] = "property" if isinstance(value, property) else value
    return members


STUBS = _stub()


def test_the_stub_names_what_the_module_has():
    compiled = {n for n, v in vars(_core).items() if not n.startswith("_") and (callable(v) or inspect.isclass(v))}
    assert compiled == set(STUBS) - {"FormatError"} | ({"FormatError"} & compiled)


@pytest.mark.parametrize("name", sorted(n for n, v in STUBS.items() if isinstance(v, list)))
def test_functions_take_what_the_stub_says(name):
    assert _compiled_params(getattr(_core, name)) == STUBS[name], name


@pytest.mark.parametrize("cls", sorted(n for n, v in STUBS.items() if isinstance(v, dict) and n != "FormatError"))
def test_classes_have_the_stubs_members(cls):
    compiled = _public(getattr(_core, cls))
    stub = STUBS[cls]
    assert set(compiled) == set(stub), f"{cls}: only compiled {set(compiled) - set(stub)}, only stub {set(stub) - set(compiled)}"
    for member, params in stub.items():
        value = compiled[member]
        if params == "property":
            assert value == "property", f"{cls}.{member} is a property in the stub"
            continue
        fn = value.__func__ if isinstance(value, staticmethod) else value
        got = _compiled_params(fn)
        assert got is not None, f"{cls}.{member}: no pybind11 signature line to compare (overloaded?)"
        assert got == params, f"{cls}.{member}: compiled {got}, stub {params}"


def test_stats_values_have_the_stubs_type():
    """The probing indexes' stats mix counts and learned rates: the stub must not say int. The core
    returns them as a tuple, which the Python class names field by field: as many names as values."""
    import numpy as np

    tree = ast.parse(STUB.read_text())
    mih = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MIHIndex")
    search = next(n for n in mih.body if isinstance(n, ast.FunctionDef) and n.name == "search")
    value_type = ast.unparse(search.returns).rsplit("tuple[", 1)[1].split(",")[0]
    allowed = {"int": (int,), "float": (int, float), "Any": (object,)}[value_type]
    index = _core.MIHIndex(64, 0)
    index.add(np.zeros((10, 8), np.uint8), None)
    stats = index.search(np.zeros((1, 8), np.uint8), 3)[-1]
    assert stats and all(isinstance(v, allowed) for v in stats), (value_type, stats)
    assert len(stats) == len(hashindex.MIHIndex._stats_fields)
    ivf = _core.IVFIndex(64, 1)
    ivf.train(np.zeros((1, 8), np.uint8), 1, 0)
    assert len(ivf.search(np.zeros((1, 8), np.uint8), 3, 1)[-1]) == len(hashindex.IVFIndex._stats_fields)
    multi = hashindex.MultiFieldIndex({"a": 64})
    multi.add({"a": np.zeros((4, 8), np.uint8)})
    multi.search({"a": np.zeros((1, 8), np.uint8)}, 2)
    assert set(multi.last_search_stats) == set(hashindex.MIHIndex._stats_fields)

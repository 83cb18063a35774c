"""The house rules, checked: imports run one way through the stages, files stay small, passes
share one matcher helper, and an install puts nothing but ``ane_rewrite`` top-level.

    frontend → rewrite machinery → passes → equivalence → coreml → runtime → analysis → optimize, cli
    (errors, hardware and the latency model below them all)
"""
import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.project_files import ROOT, ignore_foreign, project_files

STAGES = ["ane_rewrite.errors", "ane_rewrite.hardware", "ane_rewrite.cost", "ane_rewrite._source_tree", "ane_rewrite.frontend",
          "ane_rewrite.rewrite", "ane_rewrite.passes", "ane_rewrite.equivalence", "ane_rewrite.coreml",
          "ane_rewrite.runtime", "ane_rewrite.analysis", "ane_rewrite"]
BASE = 4  # errors, hardware, the latency model and the checkout mapping are one level: below every stage


def _modules() -> dict[str, Path]:
    found = {}
    for path in project_files(".py", ROOT / "ane_rewrite") + project_files(".py", ROOT / "passes"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[0] == "passes":
            parts = ["ane_rewrite", "passes"] + parts[1:]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _stage(module: str) -> int:
    index = next(i for i, s in enumerate(STAGES) if module == s or module.startswith(s + "."))
    return max(index, BASE - 1) if index < BASE else index


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ane_rewrite")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("ane_rewrite"):
                base = node.module
            else:
                continue
            subs = {f"{base}.{a.name}" for a in node.names} & known
            out |= subs or {base}
    return out


def test_imports_run_one_way_through_the_stages():
    modules = _modules()
    known = set(modules)
    backwards = []
    for module, path in modules.items():
        for target in _imports(module, path, known):
            if target != module and _stage(target) > _stage(module):
                backwards.append(f"{module} imports {target}")
    assert backwards == []


def test_no_pass_imports_the_analyzer_the_export_or_the_checker():
    modules = _modules()
    for module, path in modules.items():
        if module.startswith("ane_rewrite.passes"):
            for target in _imports(module, path, set(modules)):
                assert not target.startswith(("ane_rewrite.analysis", "ane_rewrite.coreml",
                                              "ane_rewrite.equivalence")), (module, target)


def test_no_source_file_is_over_300_lines():
    long = [(str(p.relative_to(ROOT)), n) for folder in ("ane_rewrite", "passes", "tests", "benchmarks")
            for p in project_files(".py", ROOT / folder) if (n := len(p.read_text().splitlines())) > 300]
    assert long == []


def test_the_stride_patches_are_gone_and_no_pass_repeats_the_matcher_preamble():
    gone = ("_views_to" + "_reshapes", "_relax" + "_views")
    for path in project_files(".py") + project_files(".md"):
        text = path.read_text()
        assert not [g for g in gone if g in text], path
    preamble = re.compile(r"= match_(?:from|to)\([^)]*\)\n\s+if \w+ is None:\n\s+return MatchResult\.skip\(\)")
    for path in (ROOT / "passes").glob("*.py"):
        assert not preamble.search(path.read_text()), f"{path.name}: use rewrite.match.requires"


def test_an_install_puts_only_ane_rewrite_top_level_with_its_passes(tmp_path):
    """The wheel ``pip install .`` builds holds every module of the checkout; installed into a
    folder of its own and imported from outside the checkout, ``ane_rewrite.passes`` is there, a
    top-level ``passes`` is not."""
    source = tmp_path / "source"  # a copy: a stale build/ folder in the checkout would leak into the wheel
    shutil.copytree(ROOT, source, ignore=ignore_foreign)  # no stale build/, no .venv
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    str(source), "-w", str(wheels)], check=True, capture_output=True)
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ane_rewrite"}
    packaged = {name[:-3].replace("/", ".").removesuffix(".__init__") for name in names if name.endswith(".py")}
    assert set(_modules()) - packaged == set()  # every module of the checkout ships (runtime/ops too)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import importlib.util, ane_rewrite.passes as p; "
             "print(p.__file__); print(importlib.util.find_spec('passes') is None)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    passes_file, top_level = done.stdout.split()[-2:]
    assert passes_file.startswith(str(site / "ane_rewrite" / "passes"))
    assert top_level == "True"  # no top-level passes anywhere on the path


def test_in_a_checkout_the_passes_folder_is_ane_rewrite_passes():
    import ane_rewrite.passes

    assert Path(ane_rewrite.passes.__file__).resolve() == ROOT / "passes" / "__init__.py"
    assert "passes" not in sys.modules
    from ane_rewrite.passes.layout import layout

    assert type(layout).__module__ == "ane_rewrite.rewrite.rules"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_import_cycle_among_all_modules_top_level_included():
    """Imports inside functions count: a cycle they hold together is still a cycle."""
    modules = _modules()
    known = set(modules)
    graph = {m: {t for t in _imports(m, p, known) if t in known and t != m} for m, p in modules.items()}
    assert _cycles(graph) == []

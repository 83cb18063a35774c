"""pyproject.toml states ranges; constraints.txt the exact set tested; CI runs the README's command."""
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    return [Requirement(d) for d in deps]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def test_every_dependency_is_a_range_from_a_lowest_release_to_below_the_next_major():
    for req in _requirements():
        ops = {spec.operator: Version(spec.version) for spec in req.specifier}
        assert set(ops) == {">=", "<"}, f"{req}: state a lowest release (>=) and an upper bound (<)"
        assert ops["<"].release[1:] in ((), (0,), (0, 0)), f"{req}: the upper bound is the next major"
        assert ops["<"].major > ops[">="].major or ops[">="].major == 0, f"{req}: the range holds no release"


def test_the_tested_set_pins_every_dependency_within_its_range():
    pins = _pins()
    for req in _requirements():
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert pins[name] in req.specifier, f"constraints.txt pins {req.name}=={pins[name]}, outside {req}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-c constraints.txt" in commands[1] and commands[1] in ci
    assert "constraints" not in commands[0], "the first command installs within the ranges"

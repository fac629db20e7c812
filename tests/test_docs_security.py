"""The security page cites its evidence: every test and source file it names must exist.

`docs/explanations/security.md` backs each statement with ``tests/<file>.py::<test>``
references. A test renamed or removed would leave a claim without its evidence, so each
reference is resolved here: the file exists and defines that test (a function of the module,
or a method of one of its classes), and each ``src/...`` path it names exists.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "explanations" / "security.md"
# tests/service/test_api.py::test_name (a parametrized id, "[...]", may follow).
REFERENCE = re.compile(r"\b(tests/[\w/]+\.py)::(test_\w+)")
SOURCE = re.compile(r"`(src/conveyor/[\w/.]+)`")


def _tests_in(path: Path) -> set[str]:
    """The names of the test functions `path` defines, at the top level or in a class."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        found = node.body if isinstance(node, ast.ClassDef) else [node]
        names |= {
            f.name
            for f in found
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and f.name.startswith("test")
        }
    return names


def test_every_test_the_security_page_cites_exists():
    """Each tests/...::name on the page is a test defined in that file."""
    text = PAGE.read_text(encoding="utf-8")
    cited = REFERENCE.findall(text)
    assert len(cited) >= 60, "the page backs its statements with tests/...::name references"
    missing = []
    defined: dict[str, set[str]] = {}
    for file, name in cited:
        path = ROOT / file
        if file not in defined:
            defined[file] = _tests_in(path) if path.is_file() else set()
        if name not in defined[file]:
            missing.append(f"{file}::{name}")
    assert not missing, f"cited on {PAGE.name} but not defined: {missing}"


def test_every_source_file_the_security_page_names_exists():
    """Each `src/conveyor/...` path on the page is a file or folder of the package."""
    text = PAGE.read_text(encoding="utf-8")
    named = SOURCE.findall(text)
    assert named
    missing = [path for path in named if not (ROOT / path).exists()]
    assert not missing, f"named on {PAGE.name} but not in the package: {missing}"


def test_the_checker_finds_a_reference_that_does_not_exist(tmp_path):
    """The resolver itself: a real test is found, a made-up name or file is not."""
    here = Path(__file__).relative_to(ROOT).as_posix()
    assert "test_every_test_the_security_page_cites_exists" in _tests_in(ROOT / here)
    assert "test_no_such_thing" not in _tests_in(ROOT / here)
    nested = tmp_path / "test_x.py"
    nested.write_text("class TestA:\n    def test_in_class(self):\n        pass\n")
    assert _tests_in(nested) == {"test_in_class"}
    text = "see tests/service/test_api.py::test_a_job[x] and `src/conveyor/_json.py`."
    assert REFERENCE.findall(text) == [("tests/service/test_api.py", "test_a_job")]
    assert SOURCE.findall(text) == ["src/conveyor/_json.py"]


def test_the_security_page_is_linked_from_the_readme_and_the_service_pages():
    """An operator finds the page from the README, the service's explanation and its how-to."""
    for page, link in [
        ("README.md", "docs/explanations/security.md"),
        ("docs/explanations/service.md", "(security.md)"),
        ("docs/howto/serve-jobs-over-http.md", "(../explanations/security.md)"),
    ]:
        assert link in (ROOT / page).read_text(encoding="utf-8"), page

"""What `pip install .` and the sdist give a user: names that cannot clash, a wheel that
serves its page, and a source archive that carries its own tests and docs."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import textwrap
import urllib.request
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

# What the wheel may put at the top of site-packages: the design's two packages and one
# named after the project (main.py and the page inside it).
TOP_LEVEL = {"chat", "gui", "lanchat"}


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist, built as a release would be (python -m build)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"wheel": next(out.glob("*.whl")), "sdist": next(out.glob("*.tar.gz"))}


def test_the_wheel_claims_only_the_projects_names(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(
        ".dist-info")}
    assert tops == TOP_LEVEL, tops
    assert "lanchat/main.py" in names and "lanchat/web/index.html" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: MIT" in zipfile.ZipFile(dists["wheel"]).read(
        metadata).decode()


def test_the_sdist_carries_its_tests_docs_and_licence(dists):
    with tarfile.open(dists["sdist"]) as archive:
        names = {"/".join(name.split("/")[1:]) for name in archive.getnames()}
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT)
    wanted = {"LICENSE", "README.md", "requirements.txt", "pytest.ini", "main.py",
              ".ci/run", "pyproject.toml"}
    if tracked.returncode == 0 and tracked.stdout:  # a clone: every file of these folders
        wanted |= {line for line in tracked.stdout.splitlines()
                   if line.split("/")[0] in ("tests", "docs", "web", "bench", "chat", "gui")}
    else:  # an unpacked sdist itself: what is here
        wanted |= {str(p.relative_to(ROOT)) for folder in ("tests", "docs", "web")
                   for p in (ROOT / folder).rglob("*") if p.is_file()
                   and "__pycache__" not in p.parts}
    assert wanted - names == set()
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\(((?:docs|web|bench|tests)/[^)#]+)\)", readme):
        assert link in names, f"README links {link}, which the sdist lacks"


OTHER_MAIN = textwrap.dedent("""\
    def main():
        print("the other tool's main")
""")


def venv_python(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(where)],
                   check=True, timeout=120)
    return where / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def test_installed_beside_another_main_both_work(dists, tmp_path):
    """Another distribution with a top-level `main` module: installing lanchat leaves
    it alone, and uninstalling it leaves lanchat working (its page served too)."""
    other = tmp_path / "other"
    (other / "othertool").mkdir(parents=True)
    (other / "main.py").write_text(OTHER_MAIN)
    (other / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "othertool"
        version = "1.0"
        [tool.setuptools]
        py-modules = ["main"]
    """))
    python = venv_python(tmp_path / "venv")
    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(other)], check=True, timeout=300, capture_output=True)
    subprocess.run([*pip, str(dists["wheel"])], check=True, timeout=300, capture_output=True)

    def other_works() -> bool:
        out = subprocess.run([str(python), "-c", "import main; main.main()"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60)
        return out.stdout.strip() == "the other tool's main"

    assert other_works()
    check_lanchat(python, tmp_path)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "othertool"],
                   check=True, timeout=120, capture_output=True)
    check_lanchat(python, tmp_path)


def check_lanchat(python: Path, tmp_path: Path) -> None:
    """The installed command starts a headless server whose page is the installed one."""
    command = python.parent / "lanchat"
    proc = subprocess.Popen([str(command), "--server", "--headless", "--host", "127.0.0.1",
                             "--port", "0", "--db", str(tmp_path / "chat.db"), "--quiet",
                             "--no-announce"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on "), (line, proc.stderr.read())
        port = int(line.rsplit(":", 1)[1])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
        with opener.open(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            assert answer.status == 200 and b"<html" in answer.read().lower()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        proc.stdout.close()
        proc.stderr.close()

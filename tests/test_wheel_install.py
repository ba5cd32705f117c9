"""The built wheel works once installed: everything read at run time ships inside the package.

The installed package must never reach back into the source tree, so the test keeps the two
apart at each step:

1. Build. ``pyproject.toml``, ``README.md`` and ``enosprov/`` (what an sdist carries) are
   copied to a temporary folder and built there with ``pip wheel --no-deps
   --no-build-isolation``: nothing is downloaded (setuptools>=77 comes with the ``test`` extra)
   and nothing is written into the checkout (no build/, no egg-info). A file left out of the
   package data is missing from the wheel; the test checks that every file of ``enosprov/`` is
   in it.
2. Install. ``python -m venv --without-pip`` makes a fresh environment in a few tens of
   milliseconds (no ensurepip). The test's own pip installs the wheel into it with ``--python
   <new venv's python> --no-deps --no-index``: a real install (RECORD, the ``enosprov`` console
   script with the new venv's interpreter in its shebang) into an environment that holds
   nothing else yet, so pip never sees, let alone touches, the editable install of the
   development environment.
3. Dependencies. Only then does a ``.pth`` file in the new venv list the site-packages folders
   of the interpreter running the tests, so typer, reportlab, zxing-cpp... import without a
   download. A folder named in a ``.pth`` file is appended to sys.path, after the new venv's
   own site-packages, and the ``.pth`` files inside it are not processed: the editable
   install's finder (which maps ``enosprov`` to the checkout) never runs. The test checks that
   ``enosprov`` and its templates resolve inside the new venv.
4. Run. Every command runs with its working directory in tmp_path, PYTHONPATH (and every other
   PYTHON* variable) removed, and HOME / XDG folders of its own.

It then creates a store with the installed CLI and writes a PDF label sheet with every shipped
label template (and the pdf and zpl defaults) and burn files with every shipped burn template,
plus a user template file of each kind. About 10 s.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "enosprov"
SHIPPED = PACKAGE / "templates"
LABEL_NAMES = sorted(p.stem for p in (SHIPPED / "labels").glob("*.toml"))
BURN_NAMES = sorted(p.name.removesuffix(".tmpl") for p in (SHIPPED / "burn").glob("*.tmpl"))
BIN = "Scripts" if os.name == "nt" else "bin"
EXE = ".exe" if os.name == "nt" else ""
DEVICES = ["WHL-0001", "WHL-0002", "WHL-0003"]
MASTERDATA = """\
id = "meters"
name = "Smart meters"

[[attributes]]
identifier = "phase"
type = "Enum"
values = ["single", "three"]
required = true
"""


def _setuptools_ok() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


pytestmark = pytest.mark.skipif(
    not _setuptools_ok(),
    reason="building the wheel offline needs setuptools>=77 here: pip install -e '.[test]'",
)


class Installed:
    def __init__(self, base: Path, wheel: Path, venv: Path, env: dict[str, str]):
        self.base, self.wheel, self.venv, self.env = base, wheel, venv, env
        self.python = venv / BIN / f"python{EXE}"
        self.script = venv / BIN / f"enosprov{EXE}"
        self.work = base / "work"
        self.work.mkdir()

    def run(self, *args: str, exe: Path | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(exe or self.script), *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("--store", str(self.work / "store.db"), *args)


def _quiet(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (cmd, result.stdout, result.stderr)


def _clean_env(base: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "ENOSPROV_", "PIP_")) and k != "VIRTUAL_ENV"
    }
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "APPDATA", "LOCALAPPDATA"):
        env[name] = str(base / "env" / name.lower())
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _dependency_dirs() -> list[str]:
    """The site-packages folders the dependencies are installed in, for the test interpreter."""
    dirs = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    dirs += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    out: list[str] = []
    for d in dirs:
        if d and Path(d).is_dir() and d not in out:
            out.append(d)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    env = _clean_env(base)
    # 1. build from a copy holding what an sdist holds
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    for lic in ROOT.glob("LICEN[CS]E*"):
        shutil.copy2(lic, src / lic.name)
    shutil.copytree(PACKAGE, src / "enosprov", ignore=shutil.ignore_patterns("__pycache__"))
    dist = base / "dist"
    _quiet(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(dist), str(src)],
        base, env,
    )  # fmt: skip
    (wheel,) = dist.glob("enosprov-*.whl")
    # 2. a fresh venv holding nothing but the wheel
    venv = base / "venv"
    _quiet([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    py = venv / BIN / f"python{EXE}"
    _quiet(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
         "-q", str(wheel)],
        base, env,
    )  # fmt: skip
    # 3. then the dependencies, from the test interpreter's site-packages (no .pth run there)
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        env=env, cwd=base, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "_enosprov_test_dependencies.pth").write_text(
        "\n".join(_dependency_dirs()) + "\n", encoding="utf-8"
    )
    inst = Installed(base, wheel, venv, env)
    inst.purelib = Path(purelib)
    return inst


def test_wheel_holds_every_package_file(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = {
        p.relative_to(ROOT).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert expected - names == set()
    assert {f"enosprov/templates/labels/{n}.toml" for n in LABEL_NAMES} <= names
    assert {f"enosprov/templates/burn/{n}.tmpl" for n in BURN_NAMES} <= names
    assert LABEL_NAMES and BURN_NAMES


def test_installed_package_is_the_wheel_not_the_checkout(installed):
    probe = (
        "import json, sys, enosprov, enosprov.templates as t, enosprov.qr.labels as l;"
        "print(json.dumps({'file': enosprov.__file__, 'templates': str(t.folder('labels')),"
        "'default': str(l.resolve_template(None, 'pdf')), 'path': sys.path,"
        "'labels': t.names('labels'), 'burn': t.names('burn')}))"
    )
    info = json.loads(installed.run("-c", probe, exe=installed.python).stdout)
    purelib = installed.purelib.resolve()
    for key in ("file", "templates", "default"):
        assert Path(info[key]).resolve().is_relative_to(purelib), (key, info[key])
    assert not any(Path(p).resolve() == ROOT for p in info["path"] if p)
    assert info["labels"] == LABEL_NAMES and info["burn"] == BURN_NAMES


def test_version_and_module_entry(installed):
    from enosprov import __version__

    assert installed.run("--version").stdout.strip() == f"enosprov {__version__}"
    out = installed.run("-m", "enosprov", "--help", exe=installed.python).stdout
    assert "qr" in out and "burn" in out
    assert installed.run("template", "label").stdout.split() == LABEL_NAMES
    assert installed.run("template", "burn").stdout.split() == BURN_NAMES


@pytest.fixture(scope="module")
def store(installed) -> Installed:
    w = installed.work
    (w / "masterdata.toml").write_text(MASTERDATA, encoding="utf-8")
    with open(w / "devices.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["deviceSn", "deviceName", "phase"])
        out.writerows([sn, f"Meter {sn}", "single"] for sn in DEVICES)
    installed.cli("masterdata", "create", "--file", "masterdata.toml")
    installed.cli("group", "create", "--id", "meters-eu", "--name", "Smart meters EU",
                  "--product-key", "whlPK01", "--region", "eu2", "--org", "o15000000000001",
                  "--masterdata", "meters", "--timezone", "+08:00")  # fmt: skip
    installed.cli("register", "--csv", "devices.csv", "--group", "meters-eu")
    return installed


def _check_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF"), path
    try:
        import pypdfium2
    except ImportError:  # pragma: no cover - in the test extra
        return
    pdf = pypdfium2.PdfDocument(str(path))
    text = "".join(page.get_textpage().get_text_range() for page in pdf)
    assert all(sn in text for sn in DEVICES), (path, text[:200])


@pytest.mark.parametrize("name", [*LABEL_NAMES, None, "user-file"])
def test_pdf_labels_with_every_shipped_template(store, name):
    out = store.work / f"labels-{name}"
    args = ["qr", "batch", "--group", "meters-eu", "--label-format", "pdf", "--out", str(out)]
    if name == "user-file":  # a user's copy of a shipped template, given by path
        store.run("template", "label", "thermal-62mm", "--out", "my-label.toml")
        args += ["--label-template", "my-label.toml"]
    elif name is not None:
        args += ["--label-template", name]
    store.cli(*args)
    (pdf,) = out.glob("*.pdf")  # labels.pdf, or named after the selection
    _check_pdf(pdf)
    with open(out / "manifest.csv", encoding="utf-8-sig") as fh:
        assert sorted(r["deviceSn"] for r in csv.DictReader(fh)) == DEVICES  # any label order


def test_zpl_default_template(store):
    out = store.work / "labels-zpl"
    store.cli("qr", "batch", "--group", "meters-eu", "--label-format", "zpl", "--out", str(out))
    (path,) = out.glob("*.zpl")
    zpl = path.read_text(encoding="utf-8")
    assert zpl.count("^XA") == len(DEVICES) and all(sn in zpl for sn in DEVICES)


@pytest.mark.parametrize("name", [*BURN_NAMES, *(f"{n}.tmpl" for n in BURN_NAMES[:1]), "user"])
def test_burn_export_with_every_shipped_template(store, name):
    out = store.work / f"burn-{name}"
    if name == "user":  # a template file of the user's, given by path
        (store.work / "mine.txt.tmpl").write_text("sn={deviceSn} tz={timezone}\n", "utf-8")
        template, ext = str(store.work / "mine.txt.tmpl"), ".txt"
    else:
        template, ext = name, "." + name.split(".")[1]
    store.cli("burn", "export", "--group", "meters-eu", "--burn-format", "template", "--burn-template",
              template, "--out", str(out), "--dps-url", "http://127.0.0.1:8080")  # fmt: skip
    for sn in DEVICES:
        text = (out / f"{sn}{ext}").read_text(encoding="utf-8")
        assert sn in text and "{" + "deviceSn" not in text
        assert "+08:00" in text

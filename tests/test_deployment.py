"""docker-compose.yml and the Dockerfile mirror the tested local setup.

No Docker engine runs here, so these tests check what can be checked without one: every
``RELOBLUR_*`` variable the compose file sets is a real setting; every command it runs exists
(``reloblur db upgrade``, ``reloblur serve``, ``dask scheduler``, ``dask worker``); the image
copies every package the project declares and installs torch as ``make venv`` does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from api.cli import app
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_compose_has_the_tested_services():
    services = COMPOSE["services"]
    assert set(services) == {"db", "scheduler", "worker", "api"}
    assert services["db"]["image"].startswith("postgres:")
    # one image for the API, the scheduler and the workers
    assert {services[s]["image"] for s in ("scheduler", "worker", "api")} == {"reloblur-lab"}
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_compose_variables_are_real_settings():
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("api", "worker"):
        env = _environment(COMPOSE["services"][name])
        assert env, f"service {name} sets no environment"
        for key in env:
            assert key.startswith("RELOBLUR_"), key
            assert key.removeprefix("RELOBLUR_") in fields, f"{key} is not a setting"
        assert env["RELOBLUR_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["RELOBLUR_DASK_SCHEDULER"] == "tcp://scheduler:8786"
    # the API and the workers see the data store at the same path
    assert COMPOSE["services"]["api"]["volumes"] == COMPOSE["services"]["worker"]["volumes"]


@pytest.mark.parametrize("argv", [["db", "upgrade", "--help"], ["serve", "--help"]])
def test_compose_reloblur_commands_exist(argv):
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    command = " ".join(COMPOSE["services"]["api"]["command"])
    assert "reloblur " + argv[0] in command


@pytest.mark.parametrize("service", ["scheduler", "worker"])
def test_compose_dask_commands_exist(service):
    argv = COMPOSE["services"][service]["command"]
    assert argv[:2] in (["dask", "scheduler"], ["dask", "worker"])
    dask = shutil.which("dask", path=str(Path(sys.executable).parent))
    assert dask is not None, "the dask CLI is not installed beside this Python"
    options = [a for a in argv[2:] if a.startswith("--")]
    helptext = subprocess.run([dask, argv[1], "--help"], capture_output=True, text=True, timeout=120)
    assert helptext.returncode == 0, helptext.stderr
    for option in options:
        assert option in helptext.stdout, f"`dask {argv[1]}` has no option {option}"


def test_dockerfile_copies_every_package_and_pins_torch_as_make_venv():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = set(re.findall(r"^COPY (\S+) \1$", DOCKERFILE, flags=re.M))
    assert set(packages) <= copied, f"not copied: {set(packages) - copied}"
    makefile = (ROOT / "Makefile").read_text()
    pin = re.search(r"pip install --quiet (torch==\S+)", makefile).group(1)
    assert f"pip install {pin}" in DOCKERFILE
    assert "configs" in copied  # rig YAMLs served by the API (RELOBLUR_RIGS_DIR)

"""Rig backends chosen by configuration through entry points (acquisition.backends).

The simulated rig loads no GenICam stack; a third-party package adds a camera SDK by declaring
an entry point, without a line of this repository changing (shown with a package written to a
temporary folder and put on ``sys.path``, as pip would install it).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from acquisition import backends
from acquisition.rig import RigConfigError, build_rig, load_rig_config

from .conftest import write_rig_file

REPO = Path(__file__).resolve().parents[2]


def test_the_installed_backends_and_the_emulated_port():
    assert {"harvesters", "simulated"} <= set(backends.backend_names())
    assert backends.port_backend("emulated").name == "simulated"
    assert backends.port_backend("/dev/ttyUSB0") is None
    assert backends.port_backend("socket://127.0.0.1:2101") is None
    with pytest.raises(backends.UnknownBackendError, match=r"unknown driver 'acme'.*harvesters, simulated"):
        backends.backend("acme")


def test_a_rig_file_naming_an_uninstalled_driver_is_refused_with_the_installed_ones(tmp_path):
    path = write_rig_file(tmp_path, cameras={"B": {"driver": "acme", "serial": "1"},
                                             "S": {"driver": "simulated", "serial": "2"}})
    with pytest.raises(RigConfigError, match=r"cameras\.B\.driver: unknown driver 'acme'; installed rig backends: "):
        load_rig_config(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"synchronizer": {"port": "/dev/ttyUSB0"}}, "simulated cameras can only be triggered by the emulated"),
        ({"simulation": None}, "simulated cameras need a `simulation` block"),
        ({"cameras": {"B": {"driver": "harvesters", "serial": "x"}, "S": {"driver": "harvesters", "serial": "y"}},
          "synchronizer": {"port": "/dev/ttyUSB0"}, "simulation": None},
         "cameras.B: the harvesters driver needs `cti`"),
    ],
)
def test_each_backend_checks_its_own_part_of_the_rig_file(tmp_path, changes, message):
    with pytest.raises(RigConfigError, match=message.replace(".", r"\.")):
        load_rig_config(write_rig_file(tmp_path, **changes))


def test_the_motion_hint_comes_from_the_simulated_world_only(tmp_path):
    twin = load_rig_config(write_rig_file(tmp_path))
    hint = backends.motion_hint(twin)
    assert hint is not None and hint.object_distance_m > 0 and hint.speed_mps > 0
    lab = load_rig_config(write_rig_file(
        tmp_path, simulation=None, synchronizer={"port": "/dev/ttyUSB0"},
        cameras={"B": {"driver": "harvesters", "serial": "x", "cti": "/p.cti"},
                 "S": {"driver": "harvesters", "serial": "y", "cti": "/p.cti"}}))
    assert backends.motion_hint(lab) is None


def test_the_simulated_rig_never_loads_harvesters_or_genicam(tmp_path):
    """Build the simulated rig and trigger nothing, in a fresh interpreter: neither harvesters
    nor genicam (nor the harvesters camera module) is imported."""
    rig = write_rig_file(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from acquisition.rig import build_rig, load_rig_config
        with build_rig(load_rig_config({str(rig)!r})) as rig:
            assert type(rig.cameras["B"]).__name__ == "SimulatedCamera"
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("harvesters", "genicam") or m == "acquisition.cameras.harvesters_camera")
        print("LOADED", loaded)
        assert not loaded, loaded
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "LOADED []" in out.stdout


_ACME = '''
"""Acme's camera SDK as a ReLoBlur rig backend: a package outside this repository."""
import time

import numpy as np

from acquisition.backends import BackendSession, MotionHint
from acquisition.cameras.base import Camera, CapturedFrame, ConfigureReport

OPENED = []


class AcmeCamera(Camera):
    def __init__(self, serial):
        self._serial, self._open, self._acq = serial, False, False

    serial = property(lambda self: self._serial)
    model = property(lambda self: "Acme-1")
    vendor = property(lambda self: "Acme")
    is_open = property(lambda self: self._open)
    is_acquiring = property(lambda self: self._acq)

    def open(self):
        self._open = True
        OPENED.append(self._serial)

    def close(self):
        self._open = self._acq = False

    def features(self):
        return {"DeviceModelName": "Acme-1"}

    def configure(self, settings):
        return ConfigureReport(applied=dict(settings))

    def start(self):
        self._acq = True

    def stop(self):
        self._acq = False

    def fetch(self, timeout_s):
        return CapturedFrame(np.zeros((4, 4), np.uint16), "BayerRG12", 4, 4, 0, None, None, None,
                             time.monotonic_ns())

    def flush(self):
        return 0


class _Session(BackendSession):
    def camera(self, role, serial, channel):
        return AcmeCamera(serial)


class AcmeBackend:
    name = "acme"
    emulated_ports = ()

    def check(self, config, roles):
        for role in roles:
            if not config.cameras[role].serial.startswith("ACME-"):
                raise ValueError(f"cameras.{role}: Acme serials start with ACME-")

    def start(self, config):
        return _Session()

    def motion_hint(self, config):
        return None
'''


@pytest.fixture
def acme_installed(tmp_path, monkeypatch):
    """The ``acme_rig`` package and its dist-info (with the entry point) on ``sys.path``."""
    site = tmp_path / "site"
    (site / "acme_rig").mkdir(parents=True)
    (site / "acme_rig" / "__init__.py").write_text(_ACME)
    info = site / "acme_rig-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rig\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[reloblur.rig_backends]\nacme = acme_rig:AcmeBackend\n")
    monkeypatch.syspath_prepend(str(site))
    backends.clear_cache()
    yield site
    sys.modules.pop("acme_rig", None)
    monkeypatch.undo()
    backends.clear_cache()


def test_a_third_party_backend_is_found_by_its_entry_point_and_builds_a_rig(tmp_path, acme_installed):
    assert "acme" in backends.backend_names()
    path = write_rig_file(tmp_path, cameras={"B": {"driver": "acme", "serial": "ACME-1"},
                                             "S": {"driver": "simulated", "serial": "TWIN-S-0001"}})
    config = load_rig_config(path)
    with build_rig(config) as rig:
        assert type(rig.cameras["B"]).__name__ == "AcmeCamera" and rig.cameras["B"].is_open
        assert type(rig.cameras["S"]).__name__ == "SimulatedCamera"
        assert rig.synchronizer.check_identity()
    import acme_rig

    assert acme_rig.OPENED == ["ACME-1"]
    bad = write_rig_file(tmp_path, cameras={"B": {"driver": "acme", "serial": "X-1"},
                                            "S": {"driver": "acme", "serial": "ACME-2"}})
    with pytest.raises(RigConfigError, match=r"cameras\.B: Acme serials start with ACME-"):
        load_rig_config(bad)

"""Upload holes found by probing ``reloblur serve`` (issue #13 items 2, 3, 9 and the upload part
of 10), each reproduced against a real server on loopback.

- decompression bombs (a 780 KB 16-bit PNG declaring 20000×20000, a 940 KB deflate TIFF
  declaring 30000×30000, DNGs declaring 30000×30000 in IFD 0 or in a SubIFD) are refused from
  their header (413) in milliseconds, without the server's memory growing, while ``/health``
  keeps answering;
- OpenCV's own pixel-limit error (a 3 KB PNG declaring 50000×50000, a 126-byte TIFF declaring
  100000×100000) is never a 500: refused from the header, and a ``cv2.error`` is a 422 with the
  reason, the keep-alive connection intact;
- an upload without a (good enough) token is refused before its body is read;
- error messages name no server path (no upload temp file, no data directory).
"""

from __future__ import annotations

import http.client
import importlib.util
import io
import re
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from api.http import uploads

# --------------------------------------------------------------------------- bomb builders


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_ihdr(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG signature and IHDR chunk declaring ``width``×``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return uploads.PNG_MAGIC + _chunk(b"IHDR", ihdr)


def zeros_zlib(total: int, block: int = 4 << 20) -> bytes:
    """A valid zlib stream of ``total`` zero bytes, from one compressed block repeated (after a
    full flush every block compresses to the same bytes): 800 MB in ~0.3 s and 4 MB of RAM."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = co.compress(bytes(block)) + co.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(total, block)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = co.compress(bytes(rest)) + co.flush()
    adler, zero = 1, bytes(block)
    for _ in range(count):
        adler = zlib.adler32(zero, adler)
    adler = zlib.adler32(bytes(rest), adler)
    return b"\x78\xda" + segment * count + tail + struct.pack(">I", adler)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A complete, valid 16-bit grey PNG of zeros: ~780 KB that decode to 800 MB (×3 as RGB)."""
    idat = zeros_zlib(height * (2 * width + 1))  # each row: filter byte 0, then the samples
    return png_ihdr(width, height, 16, 0) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_truncated(width: int = 50000, height: int = 50000, size: int = 3000) -> bytes:
    """IHDR plus a cut-off IDAT: ~3 KB declaring ``width``×``height``."""
    return png_ihdr(width, height) + _chunk(b"IDAT", zlib.compress(bytes(1 << 22), 9)[:size])


def tiff_bomb(width: int = 30000, height: int = 30000, tile: int = 1024) -> bytes:
    """A valid deflate-tiled 8-bit TIFF of zeros: ~940 KB that decode to 900 MB."""
    segment = zlib.compress(bytes(tile * tile), 9)
    count = -(-width // tile) * -(-height // tile)
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        data=(segment for _ in range(count)),  # the same encoded tile, written as is
        shape=(height, width),
        dtype=np.uint8,
        tile=(tile, tile),
        compression="zlib",
        photometric="minisblack",
    )
    return buf.getvalue()


def tiff_tiny(width: int = 100000, height: int = 100000, extra: list | None = None) -> bytes:
    """A hand-built one-strip TIFF (~130 bytes) declaring ``width``×``height``; ``extra``:
    (tag, type, value) entries added or replacing the defaults."""
    entries = {
        tag: (kind, value)
        for tag, kind, value in [
            (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, 4), *(extra or []),
        ]
    }  # fmt: skip
    data_at = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, (kind, value) in sorted(entries.items()):
        value = data_at if tag == 273 else value
        if kind == 3:
            out += struct.pack("<HHIHH", tag, kind, 1, value, 0)
        else:
            out += struct.pack("<HHII", tag, kind, 1, value)
    return out + struct.pack("<I", 0) + bytes(4)


def _meta():
    from core.dng import RawMetadata

    return RawMetadata(
        cfa_pattern="RGGB",
        bits=12,
        black_level=64,
        as_shot_neutral=(0.5, 1.0, 0.7),
        camera_make="ReLoBlur",
        camera_model="Twin",
        camera_serial="1",
        exposure_time_s=0.01,
    )


def patch_size(data: bytes, width: int, height: int, subifd: bool = False) -> bytes:
    """``data`` with ImageWidth/ImageLength of IFD 0 (or of its first SubIFD) overwritten."""
    out = bytearray(data)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0].pages[0] if subifd else tif.pages[0]
        for code, value in ((256, width), (257, height)):
            tag = page.tags[code]
            struct.pack_into({3: "<H", 4: "<I"}[int(tag.dtype)], out, tag.valueoffset, value)
    return bytes(out)


def dng_small() -> bytes:
    from core.dng import encode_dng

    return encode_dng(np.full((32, 32), 900, np.uint16), _meta())


def dng_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """Our own DNG layout (the CFA in IFD 0), its size patched to ``width``×``height``."""
    return patch_size(dng_small(), width, height)


def dng_subifd_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A DNG whose IFD 0 is a 16×16 preview and whose raw image, in a SubIFD, declares
    ``width``×``height`` (where LibRaw looks for it)."""
    from core.dng_encode import _dng_tags

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf, byteorder="<") as tw:
        tw.write(
            np.zeros((16, 16, 3), np.uint8),
            photometric="rgb",
            subfiletype=1,
            subifds=1,
            extratags=_dng_tags(_meta()),
        )
        tw.write(np.full((32, 32), 900, np.uint16), photometric="cfa", subfiletype=0)
    return patch_size(buf.getvalue(), width, height, subifd=True)


def _png(h: int = 32, w: int = 32) -> bytes:
    return cv2.imencode(".png", np.full((h, w, 3), 128, np.uint8))[1].tobytes()


BOMBS = {
    "png 20000x20000 16-bit": (png_bomb, "20000×20000"),
    "tiff 30000x30000 deflate": (tiff_bomb, "30000×30000"),
    "png 50000x50000 truncated": (png_truncated, "50000×50000"),
    "tiff 100000x100000 tiny": (tiff_tiny, "100000×100000"),
    "dng 30000x30000 in ifd0": (dng_bomb, "30000×30000"),
    "dng 30000x30000 in a subifd": (dng_subifd_bomb, "900000000 px"),
}

# --------------------------------------------------------------------------- the server


def _api_fixtures():
    """The API suite's fixtures module (``tests/api/conftest.py``), as this suite's conftest
    loads it (under ``_api_fixtures``), or loaded here."""
    module = sys.modules.get("_api_fixtures")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "_api_fixtures", Path(__file__).resolve().parents[1] / "api" / "conftest.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server as deployed (64 MiB bodies, the default 40 Mpx image limit) with a small model
    (so the preview decodes) and the error path warmed up (its first use imports modules)."""
    from deblur.infer import random_init_checkpoint

    tmp = tmp_path_factory.mktemp("uploads")
    ckpt = random_init_checkpoint("lbag", tmp / "lbag.pt", seed=0, num_res=1)
    live, srv = _api_fixtures().start_live(
        tmp / "data", f"sqlite:///{tmp / 'db.sqlite'}", max_upload_mb=64, checkpoint=ckpt
    )
    assert live.settings.max_image_pixels == 40_000_000
    with srv as base:
        live.url = base
        with live.client("operator") as c:
            gif = c.post("/api/v1/deblur/uploads", files={"file": ("a.gif", b"GIF89a" + bytes(64))})
            assert gif.status_code == 415
        yield live
    live.engine.dispose()


def _stored(live) -> list[Path]:
    data = Path(live.settings.data_dir)
    return sorted(
        p for folder in (data / "uploads", data / ".scratch") if folder.exists()
        for p in folder.iterdir()
    )  # fmt: skip


class HealthProbe:
    """Polls ``/health`` in a thread; ``worst`` is the slowest answer (s)."""

    def __init__(self, url: str):
        self.url, self.worst, self.answers = url, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self._stop.is_set():
                began = time.perf_counter()
                assert c.get("/api/v1/health").status_code == 200
                self.worst = max(self.worst, time.perf_counter() - began)
                self.answers += 1
                self._stop.wait(0.02)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class PeakRss:
    """The process's peak RSS growth (bytes) while in the block, sampled every 5 ms (the test
    server runs in this process)."""

    def __init__(self):
        psutil = pytest.importorskip("psutil")
        self._proc = psutil.Process()
        self.growth = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        base = self._proc.memory_info().rss
        while not self._stop.is_set():
            self.growth = max(self.growth, self._proc.memory_info().rss - base)
            self._stop.wait(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- item 2: bombs


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {name: build() for name, (build, _) in BOMBS.items()}


@pytest.mark.parametrize("route", ["uploads", "preview"])
@pytest.mark.parametrize("name", list(BOMBS))
def test_a_bomb_is_refused_from_its_header_fast_and_small(server, bombs, name, route):
    data, declared = bombs[name], BOMBS[name][1]
    before = _stored(server)
    with server.client("operator") as c:
        with HealthProbe(server.url) as health, PeakRss() as rss:
            began = time.perf_counter()
            r = c.post(f"/api/v1/deblur/{route}", files={"file": ("x.bin", data)})
            took = time.perf_counter() - began
        assert r.status_code == 413, r.text
        detail = r.json()["detail"]
        assert declared in detail and "by its header" in detail, detail
        assert ("previews take at most" if route == "preview" else "max_image_pixels") in detail
        assert took < 1.0, f"refusing {name} took {took:.2f} s"
        assert rss.growth < 64 << 20, f"RSS grew {rss.growth >> 20} MiB refusing {name}"
        assert health.worst < 1.0, f"/health took {health.worst:.2f} s meanwhile"
        assert c.get("/api/v1/health").json()["status"] == "ok"
    assert _stored(server) == before


def test_the_pixel_limit_is_read_before_decoding_at_the_boundary(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_png(40, 40))
    assert uploads.decode(path, "png", max_pixels=1600).width == 40
    with pytest.raises(uploads.ImageTooLargeError, match="40×40 = 1600 px"):
        uploads.decode(path, "png", max_pixels=1599)
    path.write_bytes(png_bomb(9000, 20))  # inside the pixel limit, a side over 8192: 422
    with pytest.raises(uploads.CorruptImageError, match="9000×20 px; both sides"):
        uploads.decode(path, "png")


def test_a_configured_limit_is_used(tmp_path, start_server):
    live = start_server(f"sqlite:///{tmp_path / 'l.db'}", max_image_pixels=1000)
    with live.client("operator") as c:
        r = c.post("/api/v1/deblur/uploads", files={"file": ("a.png", _png(32, 32))})
        assert r.status_code == 413 and "1024 px" in r.text and "1000 px" in r.text, r.text
        r = c.post("/api/v1/deblur/uploads", files={"file": ("a.png", _png(16, 16))})
        assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    "data,status,needle",
    [
        (tiff_tiny(64, 64, [(322, 4, 100000), (323, 4, 100000)]), 413, "per tile"),
        (tiff_tiny(64, 64, [(277, 3, 200)]), 422, "200 samples per pixel"),
        (png_ihdr(64, 64, 16, 3) + b"\x00" * 64, 422, "bit depth 16 with colour type 3"),
        (png_ihdr(0, 64) + b"\x00" * 64, 422, "0×64"),
        (uploads.PNG_MAGIC + b"\x00\x00\x00\x0dIHDX" + bytes(20), 422, "no IHDR"),
    ],
    ids=["huge tiles", "200 samples", "bad bit depth", "zero width", "no IHDR"],
)
def test_headers_that_would_make_the_decoder_allocate_are_refused(tmp_path, data, status, needle):
    path = tmp_path / "x"
    path.write_bytes(data)
    fmt = uploads.sniff_format(data[:16], path)
    error = uploads.ImageTooLargeError if status == 413 else uploads.CorruptImageError
    with pytest.raises(error, match=needle):
        uploads.decode(path, fmt)


def test_a_tiff_with_too_many_images_is_refused(tmp_path):
    path = tmp_path / "many.tif"
    with tifffile.TiffWriter(path) as tw:
        for _ in range(uploads.MAX_TIFF_IMAGES + 1):
            tw.write(np.zeros((16, 16), np.uint8), metadata=None)
    with pytest.raises(uploads.CorruptImageError, match="more than 64 images"):
        uploads.decode(path, "tiff")


def test_the_decoded_shape_must_match_the_header(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_png(32, 40))
    with pytest.raises(
        uploads.CorruptImageError, match="declares 20×20 px but it decodes to 40×32"
    ):
        uploads._decode_pixels(path, "png", uploads.ImageHeader(20, 20, 400))
    image = uploads._decode_pixels(path, "png", uploads.read_header(path, "png"))
    assert (image.width, image.height) == (40, 32)


def test_decoding_runs_off_the_event_loop():
    import inspect

    from api.http.routes import deblur

    assert not inspect.iscoroutinefunction(deblur.deblur_upload)  # FastAPI's thread pool
    source = inspect.getsource(deblur.deblur_preview)
    assert "anyio.to_thread.run_sync" in source and "check_upload" in source


# --------------------------------------------------------------------------- item 3: cv2.error


def test_opencv_pixel_limit_error_is_a_corrupt_image_not_a_crash():
    for data, fmt in ((png_truncated(), "png"), (tiff_tiny(), "tiff")):
        with pytest.raises(uploads.CorruptImageError, match="pixel limit") as info:
            uploads._imdecode(np.frombuffer(data, np.uint8), fmt)
        assert "/" not in str(info.value) and "loadsave" not in str(info.value)


def _raw_post(conn: http.client.HTTPConnection, path: str, token: str, data: bytes) -> tuple:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.getheader("connection"), r.read()


@pytest.mark.parametrize("route", ["uploads", "preview"])
def test_a_cv2_error_is_422_with_the_reason_and_the_connection_kept(server, route, monkeypatch):
    real = cv2.imdecode

    def imdecode_hits_opencvs_limit(data, flags):
        return real(np.frombuffer(png_truncated(), np.uint8), flags)  # raises cv2.error

    monkeypatch.setattr(uploads.cv2, "imdecode", imdecode_hits_opencvs_limit)
    before = _stored(server)
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        status, connection, body = _raw_post(
            conn, f"/api/v1/deblur/{route}", server.tokens["operator"], _png()
        )
        assert status == 422, body
        assert b"does not decode" in body and b"pixel limit" in body, body
        assert connection != "close"
        sock = conn.sock
        conn.request("GET", "/api/v1/health")  # the same keep-alive connection still answers
        r = conn.getresponse()
        assert r.status == 200 and b'"ok"' in r.read() and conn.sock is sock
    finally:
        conn.close()
    assert _stored(server) == before


# --------------------------------------------------------------------------- item 9: auth first


def _send_head_of_a_big_upload(url: str, path: str, token: str | None) -> tuple[bytes, float]:
    """Send the headers of a 60 MiB multipart upload and 4 KB of its body, then wait (at most
    5 s) for the answer's status line without sending the rest."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "b0undary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {60 << 20}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        began = time.perf_counter()
        sock.sendall(head + part + bytes(4096))
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            answer = b"(no answer within 5 s)"
        return answer.split(b"\r\n", 1)[0], time.perf_counter() - began


@pytest.mark.parametrize("route", ["uploads", "preview"])
@pytest.mark.parametrize("caller,status", [(None, b"401"), ("revoked", b"401"), ("viewer", b"403")])
def test_an_upload_is_refused_before_its_body_is_read(server, route, caller, status):
    assert server.settings.max_upload_mb * (1 << 20) > 60 << 20  # not the body limit's 413
    token = server.tokens[caller] if caller else None
    line, took = _send_head_of_a_big_upload(server.url, f"/api/v1/deblur/{route}", token)
    assert line.startswith(b"HTTP/1.1 " + status), line
    assert took < 2.0
    with server.client(None) as c:
        assert c.get("/api/v1/health").json()["status"] == "ok"


def test_an_operator_upload_still_reads_the_body_and_checks_the_form(server):
    with server.client("operator") as c:
        r = c.post(
            "/api/v1/deblur/uploads",
            files={"file": ("a.png", _png())},
            data={"tile": "64", "dtype": "bf16"},
        )
        assert r.status_code == 202, r.text
        job = c.get(r.json()["url"]).json()
        assert job["params"]["tile"] == 64 and job["params"]["dtype"] == "bf16"
        r = c.post("/api/v1/deblur/uploads", files={"file": ("a.png", _png())}, data={"tile": "13"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tile"], r.text
        r = c.post("/api/v1/deblur/uploads", data={"tile": "64"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"], r.text
        r = c.post("/api/v1/deblur/uploads", data={"file": "not a file"})
        assert r.status_code == 422 and "expected a file" in r.text, r.text
        two = [("file", ("a.png", _png())), ("file", ("b.png", _png()))]
        r = c.post("/api/v1/deblur/uploads", files=two)
        assert r.status_code == 400 and "Too many files" in r.text, r.text
        r = c.post(
            "/api/v1/deblur/uploads",
            content=b"--x\r\nnonsense",
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert r.status_code in (400, 422), r.text
        schema = c.get("/api/v1/openapi.json").json()
    for path, fields in (("uploads", {"file", "tile", "dtype"}), ("preview", {"file"})):
        body = schema["paths"][f"/api/v1/deblur/{path}"]["post"]["requestBody"]
        form = body["content"]["multipart/form-data"]["schema"]
        assert set(form["properties"]) == fields and form["required"] == ["file"]
    upload = schema["paths"]["/api/v1/deblur/uploads"]["post"]["requestBody"]
    tile = upload["content"]["multipart/form-data"]["schema"]["properties"]["tile"]["anyOf"][0]
    assert {"minimum": 16, "maximum": 8192, "multipleOf": 4}.items() <= tile.items(), tile


# --------------------------------------------------------------------------- item 10: no paths

_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[\w.-]+/")


@pytest.mark.parametrize(
    "name,data",
    [
        ("corrupt tiff", b"II*\x00" + b"\x07" * 64),
        ("truncated tiff", tiff_tiny(64, 64)[:60]),
        ("truncated dng", dng_small()[:1500]),
        ("dng with a wrong size", dng_bomb(64, 64)),
        ("truncated png", _png()[:60]),
        ("zero-size tiff", tiff_tiny(0, 64)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
@pytest.mark.parametrize("route", ["uploads", "preview"])
def test_errors_name_no_server_path(server, name, data, route):
    data_dir = str(Path(server.settings.data_dir).resolve())
    before = _stored(server)
    with server.client("operator") as c:
        r = c.post(f"/api/v1/deblur/{route}", files={"file": ("x", data)})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    for leak in (data_dir, ".upload-", ".tmp", ".scratch", "uploads/", "/tmp"):
        assert leak not in detail, (leak, detail)
    assert not _ABSOLUTE_PATH.search(detail), detail
    assert "corrupt" in detail or "does not decode" in detail, detail
    assert _stored(server) == before

"""Uploads: held in memory, type checked by extension, clear 400/415 messages."""
import io

import pytest
from flask import Flask
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app.uploads import InMemoryRequest, check_type, extension, read_upload


@pytest.mark.parametrize("name, ext", [("x.PNG", "png"), ("a.b.dcm", "dcm"), ("noext", ""), (".jpg", "jpg")])
def test_extension(name, ext):
    assert extension(name) == ext


def test_check_type_accepts_images_and_dicom_only():
    for name in ("a.png", "a.jpg", "a.JPEG", "a.dcm", "a.dicom"):
        check_type(name)
    with pytest.raises(UnsupportedMediaType, match="PNG, JPG, JPEG, DCM, DICOM"):
        check_type("scan.gif")


def test_read_upload():
    data, name = read_upload(FileStorage(io.BytesIO(b"abc"), filename="x.png"))
    assert (data, name) == (b"abc", "x.png")
    with pytest.raises(BadRequest, match="No file was uploaded"):
        read_upload(None)
    with pytest.raises(BadRequest, match="No file was uploaded"):
        read_upload(FileStorage(io.BytesIO(b"abc"), filename=""))
    with pytest.raises(UnsupportedMediaType):
        read_upload(FileStorage(io.BytesIO(b"abc"), filename="x.exe"))


def test_large_uploads_stay_in_memory():
    """Werkzeug would spool a file over 500 KB to a temporary file; this request does not."""
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    seen = {}

    @app.post("/")
    def upload():
        from flask import request

        f = request.files["file"]
        seen["stream"], seen["size"] = f.stream, len(f.read())
        return "ok"

    payload = b"\0" * (600 * 1024)
    rv = app.test_client().post("/", data={"file": (io.BytesIO(payload), "big.png")})
    assert rv.status_code == 200 and seen["size"] == len(payload)
    assert isinstance(seen["stream"], io.BytesIO)

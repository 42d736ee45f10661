"""PI Web API WebIDs in the documented WebID 2.0 *path-only* form, as the PI simulator hands out.

Reference: the PI Web API Reference, topics "WebID" / "WebID 2.0 Specification", "WebID Type"
(``webIdType=PathOnly``) and "WebID Encoding" (docs.aveva.com/bundle/pi-web-api-reference). A
path-only WebID is a 4-character header and the encoded path::

    P         type: PathOnly
    1         WebID version 2.0's version marker
    DP / DS   object marker: PI point / PI data server
    <path>    base64url (RFC 4648 section 5, no padding) of the UTF-8 bytes of the object's path
              in upper case, without its leading ``\\\\``

so ``\\\\SIMPI\\SINUSOID`` is ``P1DP`` + base64url(``SIMPI\\SINUSOID``). Anyone can build the
WebID of a point from its path, without asking the server (the OSIsoft client libraries'
``WebIdHelper.generate_web_id_by_path`` does the same), and :func:`point_web_id` gets exactly what
the simulator hands out.

Earlier simulator builds issued ``P1DP`` + base64url(tag name) (no server); :func:`decode` still
reads those (a path without a backslash), so WebIDs a client cached keep working.
"""

from __future__ import annotations

import base64
import binascii

POINT = "DP"
DATA_SERVER = "DS"
_HEADER = "P1"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def encode_path(path: str, marker: str) -> str:
    """The path-only WebID of the object at ``path`` (``\\\\SERVER\\TAG`` or ``\\\\SERVER``)."""
    bare = path[2:] if path.startswith("\\\\") else path
    return _HEADER + marker + _b64(bare.upper())


def point_web_id(server: str, tag: str) -> str:
    """The WebID of PI point ``\\\\server\\tag``."""
    return encode_path(f"\\\\{server}\\{tag}", POINT)


def data_server_web_id(server: str) -> str:
    """The WebID of PI data server ``\\\\server``."""
    return encode_path(f"\\\\{server}", DATA_SERVER)


def decode(web_id: str) -> tuple[str, str] | None:
    """``(marker, path without the leading backslashes)`` of a path-only WebID, else ``None``."""
    if len(web_id) < 5 or not web_id.startswith(_HEADER):
        return None
    marker, raw = web_id[2:4], web_id[4:]
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return (marker, text) if text else None


def decode_point(web_id: str) -> tuple[str | None, str] | None:
    """``(server, tag)`` of a point WebID (``server`` is ``None`` for the older name-only form)."""
    decoded = decode(web_id)
    if decoded is None or decoded[0] != POINT:
        return None
    server, sep, tag = decoded[1].partition("\\")
    if not sep:
        return None, server  # the older form: the tag name alone
    return (server, tag) if server and tag and "\\" not in tag else None


def decode_data_server(web_id: str) -> str | None:
    """The server name of a data server WebID."""
    decoded = decode(web_id)
    if decoded is None or decoded[0] != DATA_SERVER or "\\" in decoded[1]:
        return None
    return decoded[1]

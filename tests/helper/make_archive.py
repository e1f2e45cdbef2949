#!/usr/bin/env python3
"""Test factory: builds a source archive from a JSON spec on stdin, with Python's
own zipfile/tarfile (an implementation independent of batchd).

Spec: {"format": "zip"|"tar"|"tar.gz"|"dir", "path": "...",
       "entries": [{"name": "...", "hex": "..." | "text": "..." | "zeros": N,
                    "type": "file"|"dir"|"symlink"|"hardlink"|"fifo"|"chardev",
                    "link": "...", "deflate": false}]}
"""
import io
import json
import os
import sys
import tarfile
import zipfile

spec = json.load(sys.stdin)
fmt, path = spec["format"], spec["path"]
os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
DATE = (2024, 5, 6, 7, 8, 10)


def payload(e):
    if "hex" in e:
        return bytes.fromhex(e["hex"])
    if "zeros" in e:
        return bytes(e["zeros"])
    return e.get("text", "").encode()


if fmt == "zip":
    with zipfile.ZipFile(path, "w", allowZip64=True) as z:
        for e in spec["entries"]:
            t = e.get("type", "file")
            info = zipfile.ZipInfo(e["name"], DATE)
            if t == "dir":
                info.external_attr = (0o40755 << 16) | 0x10
                z.writestr(info, b"")
                continue
            if t == "symlink":
                info.create_system = 3
                info.external_attr = 0o120777 << 16
                z.writestr(info, e.get("link", "target").encode())
                continue
            info.compress_type = zipfile.ZIP_DEFLATED if e.get("deflate") else zipfile.ZIP_STORED
            info.external_attr = 0o100644 << 16
            z.writestr(info, payload(e))
elif fmt in ("tar", "tar.gz"):
    with tarfile.open(path, "w:gz" if fmt == "tar.gz" else "w", format=tarfile.PAX_FORMAT) as t:
        for e in spec["entries"]:
            info = tarfile.TarInfo(e["name"])
            info.mtime = 1714979290
            kind = e.get("type", "file")
            if kind == "file":
                data = payload(e)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "chardev": tarfile.CHRTYPE}[kind]
            info.linkname = e.get("link", "")
            t.addfile(info)
elif fmt == "dir":
    os.makedirs(path, exist_ok=True)
    for e in spec["entries"]:
        full = os.path.join(path, e["name"])
        os.makedirs(os.path.dirname(full), exist_ok=True)
        kind = e.get("type", "file")
        if kind == "symlink":
            os.symlink(e.get("link", "target"), full)
        elif kind == "dir":
            os.makedirs(full, exist_ok=True)
        else:
            with open(full, "wb") as f:
                f.write(payload(e))
else:
    sys.exit(f"unknown format {fmt}")

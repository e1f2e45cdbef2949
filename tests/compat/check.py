#!/usr/bin/env python3
"""The independent oracle for the compatibility suite.

  check.py SOURCE PARTS_DIR

Extracts SOURCE twice, with bsdtar and with Python's zipfile/tarfile, reads every
part in PARTS_DIR with zipfile (every CRC checked) and `unzip -t`, and compares
each packed file's bytes with both extractions. Checks too that the parts'
manifests hold every row of the source's manifest exactly once, in order.
Prints a JSON summary; exits 1 on any difference.
"""
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile


def sha(b):
    return hashlib.sha256(b).hexdigest()


def python_extract(src, dest):
    if zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as z:
            for info in z.infolist():
                name = info.filename
                if not info.flag_bits & 0x800:
                    # zipfile decodes unflagged names as cp437; Info-ZIP and others
                    # write UTF-8 there without the flag, as bsdtar and unzip assume.
                    try:
                        name = name.encode("cp437").decode("utf-8")
                    except UnicodeError:
                        pass
                if info.is_dir():
                    continue
                path = os.path.join(dest, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(z.read(info))
    else:
        with tarfile.open(src, "r:*") as t:
            t.extractall(dest, filter="tar")


def extract(label, src, dest):
    os.makedirs(dest)
    if label == "bsdtar":
        subprocess.run(["bsdtar", "-xf", src, "-C", dest], check=True, capture_output=True)
    elif label == "gnutar":
        subprocess.run(["tar", "-xf", src, "-C", dest], check=True, capture_output=True)
    else:
        python_extract(src, dest)


def main():
    src, parts_dir = sys.argv[1], sys.argv[2]
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        # bsdtar and Python for every source; GNU tar too for tars (Python cannot
        # read GNU incremental dumps). Every oracle that reads the source must agree.
        labels = ["bsdtar", "python"] + ([] if zipfile.is_zipfile(src) else ["gnutar"])
        oracles, refused = [], {}
        for label in labels:
            dest = os.path.join(tmp, label)
            try:
                extract(label, src, dest)
                oracles.append((label, dest))
            except Exception as e:  # noqa: BLE001 - reported, and judged below
                refused[label] = str(e)[:200]
        if len(oracles) < 2:
            problems.append(f"fewer than two independent readers extract the source: {refused}")
            print(json.dumps({"problems": problems, "oracles": [o[0] for o in oracles], "refused": refused}))
            sys.exit(1)
        a = oracles[0][1]
        with open(os.path.join(a, "manifest.csv"), "rb") as f:
            source_rows = f.read().splitlines()[1:]
        parts = sorted((p for p in os.listdir(parts_dir) if p.endswith(".zip")),
                       key=lambda p: int(p.rsplit("part", 1)[1][:-4]))
        rows, files = [], 0
        for p in parts:
            path = os.path.join(parts_dir, p)
            t = subprocess.run(["unzip", "-tqq", path], capture_output=True, text=True)
            if t.returncode != 0:
                problems.append(f"{p}: unzip -t: {t.stdout}{t.stderr}")
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
                if bad:
                    problems.append(f"{p}: zipfile CRC check fails on {bad}")
                for info in z.infolist():
                    data = z.read(info)
                    if info.filename == "manifest.csv":
                        rows += data.splitlines()[1:]
                        continue
                    files += 1
                    for label, root in oracles:
                        want_path = os.path.join(root, info.filename)
                        if not os.path.isfile(want_path):
                            problems.append(f"{p}: {info.filename} is not in {label}'s extraction")
                            continue
                        with open(want_path, "rb") as f:
                            want = f.read()
                        if sha(want) != sha(data):
                            problems.append(f"{p}: {info.filename}: {len(data)} bytes differ from {label}'s {len(want)}")
        if rows != source_rows:
            problems.append(f"part manifests hold {len(rows)} rows, the source {len(source_rows)} (or another order)")
    print(json.dumps({"parts": len(parts), "files": files, "rows": len(rows), "problems": problems,
                      "oracles": [o[0] for o in oracles], "refused": refused}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate a sample export like a digitisation lab's: manifest.csv plus images.

    python3 examples/make_export.py OUT --rows 4000 --size 102400 --format zip|tar|tar.gz|dir

Files hold random (incompressible) bytes, as JPEGs would. The manifest names each
file by its bare name in column `imageName` while the file sits in `images/`, the
way real exports do. Standard library only.
"""
import argparse
import csv
import io
import os
import random
import tarfile
import zipfile


def rows(n):
    for i in range(1, n + 1):
        yield {"subjectId": str(100000 + i), "imageName": f"{100000 + i}.jpg",
               "title": f"Specimen {i}, \"drawer\" {i % 40}", "collected": f"19{i % 100:02d}-01-01"}


def manifest_bytes(n):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["subjectId", "imageName", "title", "collected"], lineterminator="\r\n")
    w.writeheader()
    for r in rows(n):
        w.writerow(r)
    return buf.getvalue().encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--size", type=int, default=4096, help="bytes per file")
    ap.add_argument("--format", choices=["zip", "tar", "tar.gz", "dir"], default="zip")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    data = lambda: rnd.randbytes(args.size)
    top = "export/"
    man = manifest_bytes(args.rows)
    mtime = 1700000000
    if args.format == "dir":
        os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
        with open(os.path.join(args.out, "manifest.csv"), "wb") as f:
            f.write(man)
        for r in rows(args.rows):
            with open(os.path.join(args.out, "images", r["imageName"]), "wb") as f:
                f.write(data())
    elif args.format == "zip":
        with zipfile.ZipFile(args.out, "w", zipfile.ZIP_STORED) as z:
            z.writestr(zipfile.ZipInfo(top + "manifest.csv", (2023, 11, 14, 22, 13, 20)), man)
            for r in rows(args.rows):
                z.writestr(zipfile.ZipInfo(top + "images/" + r["imageName"], (2023, 11, 14, 22, 13, 20)), data())
    else:
        kw = {"compresslevel": 6} if args.format == "tar.gz" else {}
        mode = "w:gz" if args.format == "tar.gz" else "w"
        with tarfile.open(args.out, mode, format=tarfile.PAX_FORMAT, **kw) as t:
            def add(name, payload):
                info = tarfile.TarInfo(top + name)
                info.size = len(payload)
                info.mtime = mtime
                t.addfile(info, io.BytesIO(payload))
            add("manifest.csv", man)
            for r in rows(args.rows):
                add("images/" + r["imageName"], data())


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writers and quirks for the compatibility corpus (see build.sh).

  craft.py pyzip-stream DIR OUT   zipfile into a non-seekable stream (data descriptors)
  craft.py pyzip-zip64 DIR OUT    zipfile with ZIP64 forced on every entry and the end record
  craft.py quirks GNU.tar USTAR.tar INFOZIP.zip OUTDIR
                                  variants other writers produce, made from real archives
"""
import os
import struct
import sys
import zipfile


def walk(d):
    names = ["manifest.csv"]
    for root, dirs, files in os.walk(os.path.join(d, "img")):
        dirs.sort()
        for f in sorted(files):
            names.append(os.path.relpath(os.path.join(root, f), d))
    return names


class Unseekable:
    def __init__(self, f):
        self.f = f

    def write(self, b):
        return self.f.write(b)

    def flush(self):
        self.f.flush()


def pyzip(d, out, zip64):
    if zip64:
        zipfile.ZIP_FILECOUNT_LIMIT = 0  # makes zipfile write the ZIP64 end records too
    with open(out, "wb") as raw:
        target = raw if zip64 else Unseekable(raw)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for n in walk(d):
                st = os.stat(os.path.join(d, n))
                info = zipfile.ZipInfo.from_file(os.path.join(d, n), n)
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(os.path.join(d, n), "rb") as src, z.open(info, "w", force_zip64=zip64) as dst:
                    dst.write(src.read())


# --- tar quirks -------------------------------------------------------------

def blocks(data):
    return [bytearray(data[i:i + 512]) for i in range(0, len(data), 512)]


def headers(bl):
    """Indices of header blocks (skipping data blocks) up to the end marker."""
    i, out = 0, []
    while i < len(bl) and any(bl[i]):
        out.append(i)
        size = int(bl[i][124:136].rstrip(b"\0 ").decode() or "0", 8)
        i += 1 + (size + 511) // 512
    return out, i


def rechecksum(b):
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % sum(b)


def tar_quirks(gnu, ustar, outdir):
    data = open(gnu, "rb").read()
    bl = blocks(data)
    hs, end = headers(bl)
    body = b"".join(bl[:end])
    w = lambda name, b: open(os.path.join(outdir, name), "wb").write(b)
    # No end-of-archive blocks at all, and only one (many writers stop there).
    w("tar-no-end-blocks.tar", body)
    w("tar-one-end-block.tar", body + bytes(512))
    # plexus-archiver: a stray byte in the last zero block.
    tail = bytearray(1024)
    tail[1023] = 0x0A
    w("tar-stray-byte-end.tar", body + bytes(tail))
    # Numeric fields that start with NUL (bsdtar and Python read them as 0, up to
    # the NUL) and sizes padded with NULs instead of a space.
    nb = [bytearray(b) for b in bl]
    for i in hs:
        h = nb[i]
        for at, width in ((100, 8), (108, 8), (116, 8), (136, 12)):
            h[at:at + width] = b"\0\0" + b"7" * (width - 3) + b"\0"
        v = int(bytes(h[124:136]).rstrip(b"\0 ").decode() or "0", 8)
        h[124:136] = (b"%o" % v).ljust(12, b"\0")
        rechecksum(h)
    w("tar-nul-numbers.tar", b"".join(nb))
    # Old-style directories: type '0' (or NUL) with a trailing slash.
    ub = blocks(open(ustar, "rb").read())
    uh, _ = headers(ub)
    for i in uh:
        h = ub[i]
        if h[156:157] == b"5":
            h[156:157] = b"\0"  # AREGTYPE: what v7-era writers used for every entry
            rechecksum(h)
    w("tar-oldstyle-dirs.tar", b"".join(ub))
    # A Solaris ACL header ('A') before a file: metadata about the next entry.
    acl = b"01000000\0user::rw-,group::r--,other::r--\0"  # type (POSIX draft ACL), then the text
    a = bytearray(512)
    a[0:8] = b"acl-hdr\0"
    a[100:108] = b"0000644\0"
    a[124:136] = b"%011o\0" % len(acl)
    a[136:148] = b"%011o\0" % 1714979289
    a[156:157] = b"A"
    a[257:263] = b"ustar\0"
    a[263:265] = b"00"
    rechecksum(a)
    first = ub[uh[1]]  # before the second entry
    pos = uh[1]
    acl_blocks = [bytes(a), acl + bytes(512 - len(acl))]
    w("tar-solaris-acl.tar", b"".join(bytes(b) for b in ub[:pos]) + b"".join(acl_blocks) + b"".join(bytes(b) for b in ub[pos:]))


# --- zip quirks -------------------------------------------------------------

def eocd_at(data):
    return data.rfind(b"PK\x05\x06")


def zip_quirks(src, outdir):
    data = open(src, "rb").read()
    w = lambda name, b: open(os.path.join(outdir, name), "wb").write(b)
    e = eocd_at(data)
    # Zero padding before the archive, offsets not adjusted.
    w("zip-padded.zip", bytes(4096) + data)
    # Junk after the end record.
    w("zip-trailing-junk.zip", data + b"\x00junk after the end record\n" * 4)
    # The comment length says more than the file holds.
    eocd = bytearray(data[e:e + 22])
    struct.pack_into("<H", eocd, 20, 200)
    w("zip-truncated-comment.zip", data[:e] + bytes(eocd) + b"cut short")
    # A ZIP64 locator signature where the last central entry's comment ends: not
    # a real locator (no ZIP64 end record before it), so the classic record rules.
    with zipfile.ZipFile(src) as z:
        infos = z.infolist()
        payload = {i.filename: z.read(i) for i in infos}
    fake = b"PK\x06\x07" + struct.pack("<IQI", 0, 0x11223344556677, 1)
    path = os.path.join(outdir, "zip-fake-zip64-locator.zip")
    with zipfile.ZipFile(path, "w") as z:
        for k, i in enumerate(infos):
            n = zipfile.ZipInfo(i.filename, i.date_time)
            n.external_attr = i.external_attr
            n.compress_type = i.compress_type
            if k == len(infos) - 1:
                n.comment = fake
            z.writestr(n, payload[i.filename])
    # ZIP64 end records, with the classic record's disk fields saturated (0xFFFF),
    # as APPNOTE 4.4.1.4 allows.
    zipfile.ZIP_FILECOUNT_LIMIT = 0
    path = os.path.join(outdir, "zip-zip64-eocd-ffff.zip")
    with zipfile.ZipFile(path, "w") as z:
        for i in infos:
            z.writestr(i, payload[i.filename])
    d = bytearray(open(path, "rb").read())
    e = eocd_at(d)
    struct.pack_into("<HHHHII", d, e + 4, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    open(path, "wb").write(bytes(d))


def main():
    cmd = sys.argv[1]
    if cmd in ("pyzip-stream", "pyzip-zip64"):
        pyzip(sys.argv[2], sys.argv[3], cmd == "pyzip-zip64")
    elif cmd == "quirks":
        gnu, ustar, z, outdir = sys.argv[2:6]
        tar_quirks(gnu, ustar, outdir)
        zip_quirks(z, outdir)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

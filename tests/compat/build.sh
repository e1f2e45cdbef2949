#!/usr/bin/env bash
# Builds the differential compatibility corpus: the same small export packed by
# every real tool and format variant we can run here, plus a few quirks that
# only some tools write (made by craft.py from real archives).
#
#   tests/compat/build.sh OUTDIR
#
# Every archive holds manifest.csv and the files it names; tests/compat/expected.tsv
# says what batchd must do with each (split byte-exact, or refuse with a code).
# Needs GNU tar, bsdtar, Info-ZIP zip, 7zz, jar, git, gzip and python3
# (scripts/test.sh installs them).
set -euo pipefail
out=$(realpath -m "$1")
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TZ=UTC LC_ALL=C.UTF-8

# The export: short names (every format can hold them), a long path (over 100
# bytes), a non-ASCII name, an empty file, a file in a subfolder, odd-second
# mtimes (ZIP's DOS time has 2 s steps), and a manifest naming them all.
tree() { # DIR LONG(0|1) SPARSE(0|1)
  local d=$1
  mkdir -p "$d/img/sub"
  python3 - "$d" "$2" "$3" <<'PY'
import os, sys
d, long_, sparse = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
def blob(seed, n):
    x = seed * 0x9E3779B97F4A7C15 % 2**64 | 1
    out = bytearray()
    for _ in range(n):
        x ^= (x << 13) % 2**64; x ^= x >> 7; x ^= (x << 17) % 2**64
        out.append((x >> 24) & 0xFF)
    return bytes(out)
files = {"img/a.jpg": blob(1, 3000), "img/b.jpg": blob(2, 70000), "img/sub/c.txt": b"hello\n" * 500,
         "img/empty.bin": b"", "img/zeros.bin": bytes(9000)}
if long_:
    files["img/" + "long-directory-name-" * 4 + "/" + "very-long-file-name-" * 4 + ".tif"] = blob(3, 1234)
    files["img/caf\u00e9-\u65e5\u672c.png"] = blob(4, 777)
rows = ["id,file,title"]
for i, name in enumerate(sorted(files), 1):
    rows.append(f'{i},{name},"title {i}, with comma"')
if sparse:
    rows.append(f"{len(files) + 1},img/sparse.dat,sparse")
for name, data in files.items():
    p = os.path.join(d, name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
with open(os.path.join(d, "manifest.csv"), "w") as f:
    f.write("\n".join(rows) + "\n")
if sparse:
    # Holes at the start, in the middle and at the end: 3 MiB logical, 3 data runs.
    p = os.path.join(d, "img/sparse.dat")
    with open(p, "wb") as f:
        f.truncate(3 << 20)
        for at, seed in ((100 * 1024, 5), (1 << 20, 6), ((2 << 20) + 4096, 7)):
            f.seek(at); f.write(blob(seed, 20000))
# Odd seconds on purpose; 2024-05-06 07:08:09 UTC and 2023-01-01 00:00:01 UTC.
for root, dirs, fs in os.walk(d):
    for n in fs + dirs:
        t = 1714979289 if hash(n) % 2 else 1672531201
        os.utime(os.path.join(root, n), (t, t))
os.utime(d, (1714979289, 1714979289))
PY
}

tree "$work/short" 0 0
tree "$work/long" 1 0
tree "$work/sparse" 0 1

# GNU tar: every format it writes (v7 and ustar cannot hold the long tree's names).
for fmt in gnu oldgnu pax ustar v7; do
  tar --format=$fmt -C "$work/short" -cf "$out/gnutar-$fmt.tar" manifest.csv img
done
for fmt in gnu oldgnu pax; do
  tar --format=$fmt -C "$work/long" -cf "$out/gnutar-$fmt-long.tar" manifest.csv img
done
tar --format=ustar -C "$work/long" -cf "$out/gnutar-ustar-long-refused.tar" manifest.csv img 2>/dev/null || true
rm -f "$out/gnutar-ustar-long-refused.tar" # ustar cannot hold the long name: tar refuses it
tar --format=gnu -C "$work/long" -czf "$out/gnutar-gnu-long.tar.gz" manifest.csv img
tar --format=pax -C "$work/long" -czf "$out/gnutar-pax-long.tgz" manifest.csv img

# Sparse files in each sparse format GNU tar writes.
tar --format=gnu --sparse -C "$work/sparse" -cf "$out/gnutar-sparse-gnu.tar" manifest.csv img
tar --format=oldgnu --sparse -C "$work/sparse" -cf "$out/gnutar-sparse-oldgnu.tar" manifest.csv img
for v in 0.0 0.1 1.0; do
  tar --format=pax --sparse --sparse-version=$v -C "$work/sparse" -cf "$out/gnutar-sparse-pax$v.tar" manifest.csv img
  tar --format=pax --sparse --sparse-version=$v -C "$work/sparse" -czf "$out/gnutar-sparse-pax$v.tar.gz" manifest.csv img
done
tar --format=gnu --sparse -C "$work/sparse" -czf "$out/gnutar-sparse-gnu.tar.gz" manifest.csv img

# Hard links (a second name for the same bytes).
mkdir -p "$work/hard" && cp -a "$work/short/." "$work/hard/"
ln "$work/hard/img/a.jpg" "$work/hard/img/a-again.jpg"
sed -i '$a 9,img/a-again.jpg,hard link' "$work/hard/manifest.csv"
tar --format=gnu -C "$work/hard" -cf "$out/gnutar-hardlink.tar" manifest.csv img

# A volume label (type V), incremental dump directories (type D), a pax global
# header (type g, also what git archive writes).
tar --format=gnu --label=BATCHD-VOL -C "$work/short" -cf "$out/gnutar-label.tar" manifest.csv img
tar --format=gnu --listed-incremental="$work/snar" -C "$work/short" -cf "$out/gnutar-incremental.tar" manifest.csv img
tar --format=pax --pax-option='comment:=made by the compat suite' -C "$work/short" -cf "$out/gnutar-pax-global.tar" manifest.csv img

# Multi-member gzip: one tar, compressed in two gzip members.
tar --format=gnu -C "$work/short" -cf "$work/mm.tar" manifest.csv img
head -c 40960 "$work/mm.tar" | gzip -n > "$out/gnutar-multimember.tar.gz"
tail -c +40961 "$work/mm.tar" | gzip -n >> "$out/gnutar-multimember.tar.gz"

# bsdtar (libarchive): its tar formats, its ZIP writer, its sparse writer.
for fmt in pax ustar gnutar; do
  bsdtar --format=$fmt -C "$work/short" -cf "$out/bsdtar-$fmt.tar" manifest.csv img
done
bsdtar --format=pax -C "$work/long" -czf "$out/bsdtar-pax-long.tar.gz" manifest.csv img
bsdtar --format=pax -C "$work/sparse" -cf "$out/bsdtar-sparse-pax.tar" manifest.csv img
bsdtar --format=zip -C "$work/long" -cf "$out/bsdtar-long.zip" manifest.csv img
bsdtar --format=zip --options zip:compression=store -C "$work/short" -cf "$out/bsdtar-store.zip" manifest.csv img

# Info-ZIP: stored, best, no directory entries, forced ZIP64, streamed (data
# descriptors), and a self-extractor whose offsets zip -A adjusted.
(cd "$work/long" && zip -q -X -0 -r "$out/infozip-store.zip" manifest.csv img)
(cd "$work/long" && zip -q -9 -r "$out/infozip-best.zip" manifest.csv img)
(cd "$work/short" && zip -q -D -r "$out/infozip-nodirs.zip" manifest.csv img)
(cd "$work/short" && zip -q -fz -r "$out/infozip-zip64.zip" manifest.csv img)
(cd "$work/short" && zip -q -r - manifest.csv img | cat > "$out/infozip-streamed.zip")
printf '#!/bin/sh\necho "self-extracting stub"\nexit 0\n' > "$work/stub"
head -c 5000 /bin/true >> "$work/stub"
(cd "$work/short" && zip -q -r "$work/sfx-body.zip" manifest.csv img)
cat "$work/stub" "$work/sfx-body.zip" > "$out/infozip-sfx-adjusted.zip"
zip -q -A "$out/infozip-sfx-adjusted.zip"
# The same stub glued on without adjusting the offsets (readers must find the shift).
cat "$work/stub" "$work/sfx-body.zip" > "$out/infozip-sfx-unadjusted.zip"

# Python: zipfile to a non-seekable stream, forced ZIP64, a zipapp with a #! line.
python3 "$here/craft.py" pyzip-stream "$work/short" "$out/python-stream.zip"
python3 "$here/craft.py" pyzip-zip64 "$work/short" "$out/python-zip64.zip"
cp -a "$work/short" "$work/app" && echo 'print("hi")' > "$work/app/__main__.py"
python3 -m zipapp "$work/app" -p '/usr/bin/env python3' -o "$out/python-zipapp.pyz"

# jar, git archive, 7-Zip.
(cd "$work/short" && jar cf "$out/jar.jar" manifest.csv img)
git -C "$work/long" init -q && git -C "$work/long" add -A &&
  git -C "$work/long" -c user.name=t -c user.email=t@t -c commit.gpgsign=false commit -q -m export
for f in tar tar.gz zip; do
  git -C "$work/long" archive --format=$f -o "$out/git-archive.$f" HEAD
done
(cd "$work/short" && 7zz a -bd -tzip "$out/7z.zip" manifest.csv img >/dev/null)
(cd "$work/short" && 7zz a -bd -ttar "$out/7z.tar" manifest.csv img >/dev/null)

# Quirks other writers produce, made from real GNU tar and Info-ZIP output.
tar --format=gnu -C "$work/short" -cf "$work/base.tar" manifest.csv img
tar --format=ustar -C "$work/short" -cf "$work/base-ustar.tar" manifest.csv img
(cd "$work/short" && zip -q -r "$work/base.zip" manifest.csv img)
python3 "$here/craft.py" quirks "$work/base.tar" "$work/base-ustar.tar" "$work/base.zip" "$out"

# Outer compressions batchd does not read (refused by name).
bzip2 -c "$work/base.tar" > "$out/refused-bzip2.tar.bz2"
xz -c "$work/base.tar" > "$out/refused-xz.tar.xz"
command -v zstd >/dev/null && zstd -q -c "$work/base.tar" > "$out/refused-zstd.tar.zst"
(cd "$work/short" && 7zz a -bd -tzip -mm=BZip2 "$out/refused-bzip2-method.zip" manifest.csv img >/dev/null)
ls "$out" | wc -l

#!/usr/bin/env python3
"""Test reader: opens every *.zip in a directory with Python's zipfile (an
implementation independent of batchd), verifies every CRC, and prints JSON:
{"parts": {"name.zip": {"entries": [{"name", "hex"}], "comment": "..."}},
 "others": [files in the directory that are not part ZIPs]}."""
import json
import os
import sys
import zipfile

out, others = {}, []
d = sys.argv[1]
for name in sorted(os.listdir(d)):
    p = os.path.join(d, name)
    if not name.endswith(".zip") or name.startswith("."):
        others.append(name)
        continue
    with zipfile.ZipFile(p) as z:
        bad = z.testzip()
        if bad is not None:
            sys.exit(f"{name}: CRC error in {bad}")
        entries = [{"name": i.filename, "hex": z.read(i).hex()} for i in z.infolist()]
        out[name] = {"entries": entries, "comment": z.comment.decode()}
print(json.dumps({"parts": out, "others": others}))

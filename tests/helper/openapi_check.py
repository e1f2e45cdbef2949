#!/usr/bin/env python3
"""Validates recorded responses against docs/openapi.yaml.

stdin: one JSON object per line: {"method", "path", "status", "body"}.
Every response must be documented (path, method and status) and its JSON body
must match the documented schema. Prints each violation; exits 1 if any.
"""
import json
import re
import sys

import jsonschema
import yaml

spec = yaml.safe_load(open(sys.argv[1]))
defs = json.loads(json.dumps(spec["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/"))
responses = spec["components"]["responses"]


def find(path):
    path = path.split("?")[0]
    for template, item in spec["paths"].items():
        rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(rx, path):
            return template, item
    return None, None


bad = 0
checked = 0
for line in sys.stdin:
    if not line.strip():
        continue
    r = json.loads(line)
    template, item = find(r["path"])
    where = f'{r["method"]} {r["path"]} -> {r["status"]}'
    if item is None or r["method"].lower() not in item:
        print(f"undocumented endpoint: {where}")
        bad += 1
        continue
    op = item[r["method"].lower()]
    resp = op["responses"].get(str(r["status"]))
    if resp is None:
        print(f"undocumented status: {where}")
        bad += 1
        continue
    if "$ref" in resp:
        resp = responses[resp["$ref"].split("/")[-1]]
    content = resp.get("content", {})
    if "application/json" not in content:
        checked += 1
        continue
    schema = json.loads(json.dumps(content["application/json"]["schema"]).replace("#/components/schemas/", "#/$defs/"))
    schema = {**schema, "$defs": defs}
    errors = sorted(jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).iter_errors(r["body"]), key=str)
    for e in errors[:5]:
        print(f"schema violation: {where}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
    bad += bool(errors)
    checked += 1
print(f"{checked} responses checked, {bad} violations")
sys.exit(1 if bad else 0)

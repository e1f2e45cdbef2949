"""The tests' independent S3 client (boto3): what is in a bucket, read back.

    s3_oracle.py ENDPOINT KEY SECRET list BUCKET PREFIX
        -> {"objects": [{"key", "size", "sha256", "meta_sha256"}], "multipart_uploads": [keys]}
    s3_oracle.py ENDPOINT KEY SECRET put BUCKET KEY FILE
"""
import hashlib
import json
import sys

import boto3
from botocore.config import Config

endpoint, key_id, secret, cmd = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="garage", aws_access_key_id=key_id,
                  aws_secret_access_key=secret,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
if cmd == "list":
    bucket, prefix = sys.argv[5:7]
    out = {"objects": [], "multipart_uploads": []}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            obj = s3.get_object(Bucket=bucket, Key=o["Key"])
            data = obj["Body"].read()
            out["objects"].append({"key": o["Key"], "size": o["Size"], "sha256": hashlib.sha256(data).hexdigest(),
                                   "meta_sha256": obj.get("Metadata", {}).get("sha256")})
    ups = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    out["multipart_uploads"] = [u["Key"] for u in ups.get("Uploads", [])]
    print(json.dumps(out))
elif cmd == "put":
    bucket, key, path = sys.argv[5:8]
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f.read())
else:
    sys.exit(f"unknown command {cmd}")

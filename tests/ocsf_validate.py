#!/usr/bin/env python3
"""Validate OCSF events (one JSON object per line on stdin) against the OCSF JSON schema of
their class, as the `ocsf-json-schema` package (PyPI) generates it for metadata.version.
Prints one line per invalid event and exits 1 if any; 0 when all are valid."""
import json
import sys

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

bad = 0
validators = {}
for n, line in enumerate(sys.stdin, 1):
    if not line.strip():
        continue
    event = json.loads(line)
    version = event["metadata"]["version"]
    key = (version, event["class_uid"])
    if key not in validators:
        schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
        name = schema.lookup_class_name_from_uid(event["class_uid"])
        validators[key] = jsonschema.Draft202012Validator(schema.get_class_schema(name))
    errors = sorted(validators[key].iter_errors(event), key=lambda e: list(e.path))
    for e in errors:
        bad += 1
        print(f"event {n}: {'/'.join(map(str, e.path)) or '(root)'}: {e.message}")
print(f"{n if 'n' in dir() else 0} events checked, {bad} errors", file=sys.stderr)
sys.exit(1 if bad else 0)

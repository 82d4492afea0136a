#!/usr/bin/env python3
"""Small JSON helpers for deploy.sh, destroy.sh and smoke_test.sh (standard library only).

Subcommands:
  render TEMPLATE KEY=VALUE...            print a monitoring template with ${KEY} replaced
  log-metrics ALERTING_TEMPLATE KEY=VALUE...   name<TAB>description<TAB>filter per metric
  alert-policies ALERTING_TEMPLATE OUTDIR CHANNELS KEY=VALUE...
                                          write one AlertPolicy JSON file per policy and
                                          print displayName<TAB>path
  missing-indexes INDEXES_JSON [EXISTING_JSON]
                                          print collection<TAB>field-config... for each
                                          composite index of INDEXES_JSON not in EXISTING_JSON
                                          (gcloud firestore indexes composite list --format=json)
  pending-indexes INDEXES_JSON EXISTING_JSON
                                          print how many composite indexes of INDEXES_JSON
                                          are not READY in EXISTING_JSON (same listing)
  field-overrides INDEXES_JSON            print collection<TAB>field<TAB>ttl(0|1) per override
  field-actions TTL(0|1)                  read `gcloud firestore indexes fields describe
                                          --format=json` on stdin (empty if unknown) and print
                                          what is missing: "exempt" and/or "ttl"
  documents-mentioning TEXT               read a Firestore REST runQuery answer on stdin and
                                          print how many documents hold TEXT in a string or
                                          bytes field (bytes come back base64-encoded)
  rfc3339 EPOCH_SECONDS                   print the time as 2025-01-31T12:00:00Z (UTC)
  new-key                                 print a random key (an API key, the hash key)
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import secrets
import string
import sys


def _vars(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


def _render(path: str, pairs: list[str]) -> str:
    with open(path, encoding="utf-8") as fh:
        # The templates use only ${name} placeholders, which Terraform's templatefile()
        # and string.Template read the same way.
        return string.Template(fh.read()).substitute(_vars(pairs))


def _index_key(collection: str, fields: list[dict]) -> tuple:
    return (
        collection,
        tuple(
            (f["fieldPath"], f.get("order", ""), f.get("arrayConfig", ""))
            for f in fields
            if f["fieldPath"] != "__name__"
        ),
    )


def _existing_indexes(existing_path: str | None) -> dict[tuple, str]:
    """{index key: state} of a `gcloud firestore indexes composite list --format=json`."""
    existing = []
    if existing_path and os.path.exists(existing_path) and os.path.getsize(existing_path):
        with open(existing_path, encoding="utf-8") as fh:
            try:
                existing = json.load(fh) or []
            except json.JSONDecodeError:
                existing = []
    have = {}
    for index in existing:
        # name: projects/P/databases/D/collectionGroups/C/indexes/ID
        parts = index.get("name", "").split("/")
        collection = (
            parts[parts.index("collectionGroups") + 1] if "collectionGroups" in parts else ""
        )
        have[_index_key(collection, index.get("fields", []))] = index.get("state", "READY")
    return have


def pending_indexes(indexes_path: str, existing_path: str) -> None:
    with open(indexes_path, encoding="utf-8") as fh:
        wanted = json.load(fh).get("indexes", [])
    have = _existing_indexes(existing_path)
    keys = [_index_key(i["collectionGroup"], i["fields"]) for i in wanted]
    print(sum(have.get(key) != "READY" for key in keys))


def missing_indexes(indexes_path: str, existing_path: str | None) -> None:
    with open(indexes_path, encoding="utf-8") as fh:
        wanted = json.load(fh).get("indexes", [])
    have = _existing_indexes(existing_path)
    for index in wanted:
        if _index_key(index["collectionGroup"], index["fields"]) in have:
            continue
        configs = []
        for field in index["fields"]:
            config = f"field-path={field['fieldPath']}"
            if "order" in field:
                config += f",order={field['order'].lower()}"
            if "arrayConfig" in field:
                config += f",array-config={field['arrayConfig'].lower()}"
            configs.append(config)
        print("\t".join([index["collectionGroup"], *configs]))


def field_overrides(indexes_path: str) -> None:
    with open(indexes_path, encoding="utf-8") as fh:
        overrides = json.load(fh).get("fieldOverrides", [])
    for override in overrides:
        if override.get("indexes") not in ([], None):
            raise SystemExit('only index exemptions ("indexes": []) are supported here')
        ttl = "1" if override.get("ttl") else "0"
        print("\t".join([override["collectionGroup"], override["fieldPath"], ttl]))


def field_actions(ttl_wanted: str) -> None:
    raw = sys.stdin.read().strip()
    try:
        field = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        field = {}
    index_config = field.get("indexConfig", {})
    if index_config.get("usesAncestorConfig", True) or index_config.get("indexes"):
        print("exempt")
    state = field.get("ttlConfig", {}).get("state", "")
    if ttl_wanted == "1" and state not in ("ACTIVE", "CREATING"):
        print("ttl")


def _texts(value: object) -> list[str]:
    """Every string of a Firestore REST value, bytes decoded."""
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    if not isinstance(value, dict):
        return []
    out = []
    for kind, inner in value.items():
        if kind == "stringValue":
            out.append(inner)
        elif kind == "bytesValue":
            try:
                out.append(base64.b64decode(inner).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                out.append(inner)
        else:
            out += _texts(inner)
    return out


def documents_mentioning(text: str) -> None:
    raw = sys.stdin.read().strip()
    answer = json.loads(raw) if raw else []
    count = 0
    for item in answer if isinstance(answer, list) else [answer]:
        fields = item.get("document", {}).get("fields", {})
        if any(text in t for t in _texts(list(fields.values()))):
            count += 1
    print(count)


def alert_policies(template: str, outdir: str, channels: str, pairs: list[str]) -> None:
    alerting = json.loads(_render(template, pairs))
    for policy in alerting["alertPolicies"]:
        body = {
            "displayName": policy["displayName"],
            "combiner": "OR",
            "documentation": {"content": policy["documentation"], "mimeType": "text/markdown"},
            "notificationChannels": [c for c in channels.split(",") if c],
            "alertStrategy": {"autoClose": "86400s"},
        }
        if "logFilter" in policy:
            # A log match: no logs-based metric to wait for (it can 404 for minutes after
            # it is created).
            body["conditions"] = [
                {
                    "displayName": policy["displayName"],
                    "conditionMatchedLog": {"filter": policy["logFilter"]},
                }
            ]
            body["alertStrategy"]["notificationRateLimit"] = {
                "period": policy["notificationRateLimit"]
            }
        else:
            body["conditions"] = [
                {
                    "displayName": policy["displayName"],
                    "conditionThreshold": {
                        "filter": policy["filter"],
                        "comparison": policy["comparison"],
                        "thresholdValue": float(policy["threshold"]),
                        "duration": policy["duration"],
                        "trigger": {"count": 1},
                        "aggregations": [
                            {
                                "alignmentPeriod": policy["alignmentPeriod"],
                                "perSeriesAligner": policy["perSeriesAligner"],
                            }
                        ],
                    },
                }
            ]
        path = os.path.join(outdir, f"alert-{policy['key']}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(body, fh, indent=2)
        print(f"{policy['displayName']}\t{path}")


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "render":
        sys.stdout.write(_render(args[0], args[1:]))
    elif cmd == "log-metrics":
        for metric in json.loads(_render(args[0], args[1:]))["logMetrics"]:
            print("\t".join([metric["name"], metric["description"], metric["filter"]]))
    elif cmd == "alert-policies":
        alert_policies(args[0], args[1], args[2], args[3:])
    elif cmd == "missing-indexes":
        missing_indexes(args[0], args[1] if len(args) > 1 else None)
    elif cmd == "pending-indexes":
        pending_indexes(args[0], args[1])
    elif cmd == "field-overrides":
        field_overrides(args[0])
    elif cmd == "field-actions":
        field_actions(args[0])
    elif cmd == "documents-mentioning":
        documents_mentioning(args[0])
    elif cmd == "rfc3339":
        moment = datetime.datetime.fromtimestamp(int(args[0]), tz=datetime.UTC)
        print(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    elif cmd == "new-key":
        print(secrets.token_urlsafe(30))
    else:
        raise SystemExit(f"unknown subcommand {cmd}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])

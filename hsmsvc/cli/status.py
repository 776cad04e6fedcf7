"""``hsmsvc status``: how hsmsvc stands, from a running server or from its store.

``--server host:port`` (with ``--ca/--cert/--key``, mTLS as your own principal, which the
policy must make an auditor) asks the running server: its version, LMK KCV, backend
members and their health, store, schema revision, audit head and key counts.

Without ``--server`` it reads the store named by ``--store`` or ``--config`` and changes
nothing: the schema is never migrated (one line says so if it is behind), and the LMK
is not opened, so no passphrase is asked for. The LMK KCV is then the one the sealed
file records, and the audit chain's hashes are checked, not its MACs; ``--verify-macs``
opens the LMK (its passphrase needed) to check those, the anchor and the checkpoints too.

Exit status: 0 when all is well, 1 when the schema is behind or the audit chain broken.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hsmsvc.cli import backend, remote
from hsmsvc.errors import InvalidInput

HELP = "how hsmsvc stands: a running server (--server, auditor) or its store (read-only, no passphrase)"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    remote.add_arguments(p, required=False)
    p.add_argument("--config", help="server config file: its store, backend and checkpoints (without --server)")
    p.add_argument("--store", help="database URL (without --server; overrides the config's)")
    p.add_argument("--checkpoints", help="the audit checkpoint file (with --verify-macs)")
    p.add_argument("--verify-macs", action="store_true",
                   help="open the LMK (passphrase or PIN needed) to check the audit MACs, anchor and checkpoints")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    backend.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    doc = _remote(args) if remote.given(args) else _local(args)
    if args.json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        _print(doc)
    ok = not doc["store"]["schema_behind"] and doc["audit"].get("intact", True)
    return 0 if ok else 1


def _remote(args: argparse.Namespace) -> dict[str, Any]:
    remote.quiet_grpc()  # before the stubs import grpc
    from hsmsvc_client.v1 import status_service_pb2 as m
    from hsmsvc_client.v1 import types_pb2 as pb

    with remote.client(args) as c:
        r = c.status.GetServerStatus(m.GetServerStatusRequest(), timeout=args.timeout)
    head = r.audit_head
    return {
        "source": "server",
        "server": remote.setting(args, "server"),
        "version": r.version,
        "started": r.start_time.ToDatetime().isoformat() + "Z" if r.HasField("start_time") else None,
        "lmk_kcv": r.backend.lmk_kcv,
        "lmk_algorithm": r.backend.lmk_algorithm,
        "crypto": {"national_only": r.crypto.national_only, "non_national_keys": r.crypto.non_national_keys},
        "backend": {"kind": r.backend.kind, "members": [
            {"index": b.index, "kind": b.kind, "healthy": b.healthy, "restarts": b.restarts}
            for b in r.backend.members]},
        "store": {"kind": r.store.kind, "url": r.store.url, "schema_revision": r.store.schema_revision,
                  "schema_head": r.store.schema_head,
                  "schema_behind": r.store.schema_revision != r.store.schema_head},
        "audit": {"head_sequence": head.sequence, "head_hash": head.hash,
                  "head_time": head.time.ToDatetime().isoformat() + "Z" if head.HasField("time") else None},
        "keys": [{"type": pb.KeyType.Name(k.key_type).removeprefix("KEY_TYPE_"),
                  "state": pb.KeyState.Name(k.state).removeprefix("KEY_STATE_"), "count": k.count}
                 for k in r.key_counts],
    }


def _local_sources(args: argparse.Namespace) -> tuple[str, str | None, str | None, bool | None]:
    """The store URL, the sealed LMK file (soft backend), the checkpoint file, and whether the
    config sets the national-only mode (None: no config named)."""
    store, sealed, checkpoints, national = args.store, args.sealed, args.checkpoints, None
    if args.config:
        from hsmsvc.api.config import load

        cfg = load(args.config)
        store = store or cfg.store
        first = cfg.backend.members[0]
        sealed = sealed or getattr(first, "sealed_lmk", None)
        checkpoints = checkpoints or cfg.audit_checkpoints
        national = cfg.crypto.national_only
    if not store:
        raise InvalidInput("--store", "a database URL, --config FILE, or --server host:port")
    return store, sealed, checkpoints, national


def _local(args: argparse.Namespace) -> dict[str, Any]:
    from hsmsvc.keys.audit import GENESIS, row_hash
    from hsmsvc.keys.store.reader import StoreReader

    from hsmsvc.keys.national import NATIONAL_ALGORITHMS

    store, sealed, checkpoints, national = _local_sources(args)
    backend._existing(store, creating=False)
    doc: dict[str, Any] = {"source": "store", "lmk_kcv": _recorded_kcv(sealed), "lmk_kcv_source": "sealed file"}
    with StoreReader.open(store) as reader:
        rev = reader.revision()
        doc["store"] = {"kind": reader.kind, "url": reader.url, "schema_revision": rev.current or "",
                        "schema_head": rev.head, "schema_behind": rev.behind, "schema": rev.describe()}
        if rev.current is None:  # never migrated: no tables to read
            doc["audit"], doc["keys"] = {"head_sequence": 0, "head_hash": "", "head_time": None}, []
            return doc
        rows, prev, broken = 0, GENESIS, []
        for r in reader.audit_rows():
            rows += 1
            h = row_hash(prev_hash=r.prev_hash, seq=r.seq, at=r.at, actor=r.actor, action=r.action,
                         key_id=r.key_id, key_version=r.key_version, detail=r.detail)
            if r.seq != rows or r.prev_hash != prev or h != r.hash:
                broken.append(f"seq {r.seq}")
            prev = r.hash
        head = reader.audit_head()
        doc["audit"] = {"head_sequence": head.seq if head else 0, "head_hash": head.hash if head else "",
                        "head_time": head.at if head else None, "rows": rows, "intact": not broken,
                        "checked": "hashes", "problems": broken[:10]}
        doc["keys"] = [{"type": t.value, "state": s.value, "count": n}
                       for (t, s), n in sorted(reader.key_counts().items(), key=lambda kv: (kv[0][0].value,
                                                                                             kv[0][1].value))]
        foreign = sum(n for a, n in reader.algorithm_counts().items() if a not in NATIONAL_ALGORITHMS)
        doc["crypto"] = {"national_only": national, "non_national_keys": foreign}
    if args.verify_macs:
        doc.update(_verified(args, store, checkpoints, doc["audit"]))
    return doc


def _recorded_kcv(sealed: str | None) -> str | None:
    if not sealed:
        return None
    from hsmsvc.hsm.soft.sealed import recorded_kcv

    try:
        blob = Path(sealed).read_bytes()
    except OSError:
        raise InvalidInput("sealed_lmk", f"{sealed}: cannot be read") from None
    return recorded_kcv(blob).hex().upper()


def _verified(args: argparse.Namespace, store: str, checkpoints: str | None,
              audit: dict[str, Any]) -> dict[str, Any]:
    """The LMK opened: its KCV as the backend computes it, and the whole chain checked."""
    from hsmsvc.keys.store import KeyStore

    if args.config and not (args.sealed or args.pkcs11_module):
        from hsmsvc.api.config import load
        from hsmsvc.api.server import open_backend

        hsm = open_backend(load(args.config))
    else:
        hsm = backend.open_backend(args)
    try:
        ks = KeyStore(store, hsm)
        try:
            report = ks.verify_audit(Path(checkpoints) if checkpoints else None)
        finally:
            ks.close()
        kcv = hsm.lmk_kcv().hex().upper()
    finally:
        hsm.close()
    return {"lmk_kcv": kcv, "lmk_kcv_source": "backend",
            "audit": {**audit, "intact": report.ok, "checked": "hashes, MACs, anchor"
                      + (", checkpoints" if checkpoints else ""), "problems": list(report.problems[:10]),
                      "notes": list(report.notes)}}


def _print(doc: dict[str, Any]) -> None:
    if doc["source"] == "server":
        print(f"server    {doc['server']}: hsmsvc {doc['version']}, serving since {doc['started']}")
        b = doc["backend"]
        members = ", ".join(f"{m['index']} {m['kind']} {'healthy' if m['healthy'] else 'DOWN'}"
                            + (f" ({m['restarts']} restarts)" if m["restarts"] else "") for m in b["members"])
        print(f"backend   {b['kind']}: {members}")
    kcv = doc["lmk_kcv"] or "unknown (no sealed file named; --verify-macs opens the LMK)"
    note = " (recorded in the sealed file; not opened)" if doc.get("lmk_kcv_source") == "sealed file" \
        and doc["lmk_kcv"] else ""
    print(f"LMK KCV   {kcv}{note}" + (f", {doc['lmk_algorithm']}" if doc.get("lmk_algorithm") else ""))
    if "crypto" in doc:
        c = doc["crypto"]
        mode = {True: "national-only (SM2, SM3, SM4)", False: "all algorithms", None: "unknown (no --config)"}
        print(f"crypto    {mode[c['national_only']]}; {c['non_national_keys']} keys not SM4, SM2 or HMAC-SM3"
              + (" (unusable in this mode)" if c["national_only"] and c["non_national_keys"] else ""))
    s = doc["store"]
    print(f"store     {s['kind']} {s['url']}")
    behind = f", behind {s['schema_head']}: run the migrations (nothing was changed)" if s["schema_behind"] else ""
    print(f"schema    {s['schema_revision'] or 'none'}{behind or ' (up to date)'}")
    a = doc["audit"]
    line = f"audit     head seq {a['head_sequence']} hash {a['head_hash'] or '-'}"
    if "intact" in a:
        line += f"; {a['rows']} rows, {a['checked']} {'intact' if a['intact'] else 'BROKEN'}"
    print(line)
    for p in a.get("problems", []):
        print(f"FAIL      {p}")
    for n in a.get("notes", []):
        print(f"NOTE      {n}")
    counts = ", ".join(f"{k['type']} {k['state']} {k['count']}" for k in doc["keys"]) or "none"
    print(f"keys      {counts}")

"""Issue 28 codemod: backend.method(args) -> backend.execute(Command(kw=...)).

Usage: codemod.py [--list] [--apply] FILES...  (receivers filtered by RECEIVERS regex)
"""
import ast, re, sys, pathlib

PIN3 = ("block", "fmt", "pan")
SIG = {
    "generate_key": ("GenerateKey", ["spec"]),
    "form_key": ("FormKey", ["spec", "components"]),
    "check_component": ("CheckComponent", ["ctk", "algorithm", "wrapped", "kcv"]),
    "form_key_wrapped": ("FormKeyWrapped", ["spec", "ctk", "parts"]),
    "lmk_components": ("LmkComponents", ["n"]),
    "translate_lmk": ("TranslateLmk", ["key"]),
    "import_key": ("ImportKey", ["kek", "wrapped", "spec", "kcv"]),
    "export_key": ("ExportKey", ["kek", "key"]),
    "kcv": ("Kcv", ["key"]),
    "key_sync_mac": ("KeySyncMac", ["kek", "data"]),
    "public_key": ("PublicKey", ["key"]),
    "translate_pin": ("TranslatePin", ["block", "src", "src_format", "dst", "dst_format", "pan"]),
    "translate_pins": ("TranslatePins", ["blocks", "src", "src_format", "dst", "dst_format", "pans"]),
    "pin_translator": (None, ["src", "src_format", "dst", "dst_format"]),
    "encrypt_pin_for_storage": ("EncryptPinForStorage", ["block", "key", "fmt", "pan", "psk", "account"]),
    "verify_pin_stored": ("VerifyPinStored", ["block", "key", "fmt", "pan", "psk", "account", "stored"]),
    "verify_pins_stored": ("VerifyPinsStored", ["blocks", "key", "fmt", "pans", "psk", "accounts", "stored"]),
    "reencrypt_stored_pin": ("ReencryptStoredPin", ["stored", "old_psk", "new_psk", "account"]),
    "reencrypt_stored_pins": ("ReencryptStoredPins", ["old_psk", "new_psk", "rows", "old_lmk"]),
    "compare_stored_pins": ("CompareStoredPins", ["old_psk", "new_psk", "rows", "old_lmk"]),
    "verify_pin_ibm3624": ("VerifyPinIbm3624", ["block", "key", "fmt", "pan", "pvk", "validation_data", "offset"]),
    "generate_pin_offset": ("GeneratePinOffset", ["block", "key", "fmt", "pan", "pvk", "validation_data"]),
    "generate_pvv": ("GeneratePvv", ["block", "key", "fmt", "pan", "pvk", "pvki"]),
    "verify_pin_pvv": ("VerifyPinPvv", ["block", "key", "fmt", "pan", "pvk", "pvki", "pvv"]),
    "generate_mac": ("GenerateMac", ["key", "data", "algorithm", "padding"]),
    "verify_mac": ("VerifyMac", ["key", "data", "mac", "algorithm", "padding"]),
    "generate_macs": ("GenerateMacs", ["key", "messages", "algorithm", "padding"]),
    "verify_macs": ("VerifyMacs", ["key", "messages", "macs", "algorithm", "padding"]),
    "encrypt_data": ("EncryptData", ["key", "params", "data"]),
    "encrypt_fields": ("EncryptFields", ["key", "params", "ivs", "plaintexts"]),
    "decrypt_data": ("DecryptData", ["key", "params", "data"]),
    "reencrypt_data": ("ReencryptData", ["src", "src_params", "dst", "dst_params", "data"]),
    "pan_hash": ("PanHash", ["pan"]),
    "pan_hashes": ("PanHashes", ["pans"]),
    "random": ("Random", ["length"]),
    "audit_mac": ("AuditMac", ["data"]),
    "write_audit_anchor": ("WriteAuditAnchor", ["seq", "head", "store"]),
    "read_audit_anchor": ("ReadAuditAnchor", ["store"]),
    "forget": ("Forget", ["key_id"]),
}
RENAME = {"fmt": "format"}  # verify_pins_stored's fmt


def receivers_ok(text, pattern):
    return re.fullmatch(pattern, text) is not None


def convert(src, node, method):
    cls, params = SIG[method]
    seg = lambda n: ast.get_source_segment(src, n)
    vals = {}
    for i, a in enumerate(node.args):
        if isinstance(a, ast.Starred):
            raise ValueError("starred")
        vals[params[i]] = seg(a)
    for kw in node.keywords:
        if kw.arg is None:
            raise ValueError("**kw")
        vals[kw.arg] = seg(kw.value)
    recv = seg(node.func.value)
    if cls is None:  # pin_translator
        inner = ", ".join(f"{k}={vals[k]}" for k in params)
        return f"{recv}.pin_translator({inner})", None
    parts = []
    if "block" in params:
        ffield = "src_format" if "src_format" in params else "fmt"
        parts.append(f"pin=PinBlock({vals['block']}, {vals[ffield]}, {vals['pan']})")
        skip = {"block", ffield, "pan"}
    else:
        skip = set()
    for k in params:
        if k in skip or k not in vals:
            continue
        name = RENAME.get(k, k) if method == "verify_pins_stored" else k
        parts.append(f"{name}={vals[k]}")
    return f"{recv}.execute({cls}({', '.join(parts)}))", cls


def run(path, pattern, apply, listing):
    p = pathlib.Path(path)
    src = p.read_text()
    tree = ast.parse(src)
    edits, used = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SIG:
            recv = ast.get_source_segment(src, node.func.value)
            if not receivers_ok(recv, pattern):
                if listing:
                    print(f"SKIP {path}:{node.lineno}: {recv}.{node.func.attr}")
                continue
            try:
                new, cls = convert(src, node, node.func.attr)
            except (ValueError, KeyError, IndexError) as e:
                print(f"FAIL {path}:{node.lineno}: {recv}.{node.func.attr} {e!r}")
                continue
            if listing:
                print(f"EDIT {path}:{node.lineno}: {new}")
            edits.append((node, new))
            if cls:
                used.add(cls)
    if not apply or not edits:
        return
    lines = src.splitlines(keepends=True)
    offs = [0]
    for l in lines:
        offs.append(offs[-1] + len(l))
    def off(line, col):  # col is utf-8 byte offset
        return offs[line - 1] + len(lines[line - 1].encode()[:col].decode())
    spans = sorted(((off(n.lineno, n.col_offset), off(n.end_lineno, n.end_col_offset), new) for n, new in edits), reverse=True)
    # innermost-first is unnecessary unless nested; refuse overlaps
    out = src
    last_start = None
    for s, e, new in spans:
        if last_start is not None and e > last_start:
            print(f"NESTED {path} at {s}: re-run"); continue
        out = out[:s] + new + out[e:]
        last_start = s
    pin = "PinBlock" if "pin=PinBlock(" in out and "PinBlock" not in src else None
    imports = sorted(used)
    add = ""
    if imports:
        add += f"from hsmsvc.hsm.commands import {', '.join(imports)}\n"
    if pin:
        add += "from hsmsvc.hsm.model import PinBlock\n"
    if add:
        # after the last top-level 'from hsmsvc' / 'import' line of the header
        tree2 = ast.parse(src)
        last = 0
        for n in tree2.body:
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                last = n.end_lineno
            elif last and not isinstance(n, (ast.Expr,)):
                break
        ol = out.splitlines(keepends=True)
        # position shift: imports are above the first edit usually; find the same line text
        idx = None
        target = lines[last - 1] if last else None
        for i, l in enumerate(ol):
            if l == target:
                idx = i + 1
                break
        ol.insert(idx if idx is not None else 0, add)
        out = "".join(ol)
    p.write_text(out)
    print(f"wrote {path}: {len(edits)} edits")


if __name__ == "__main__":
    args = sys.argv[1:]
    apply = "--apply" in args
    listing = "--list" in args
    pattern = r".*"
    if "--recv" in args:
        pattern = args[args.index("--recv") + 1]
        args.remove("--recv"); args.remove(pattern)
    files = [a for a in args if not a.startswith("--")]
    for f in files:
        run(f, pattern, apply, listing)

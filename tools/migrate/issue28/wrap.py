"""Wrap lines longer than LIMIT that the codemod produced: break at top-level commas of the command's call."""
import re, sys, pathlib, ast
LIMIT = 110
def split_top(s):
    """Split s (content inside parens) at depth-0 commas."""
    parts, depth, cur, q = [], 0, "", None
    i = 0
    while i < len(s):
        c = s[i]
        if q:
            cur += c
            if c == "\\":
                cur += s[i+1]; i += 2; continue
            if c == q:
                q = None
        elif c in "\"'":
            q = c; cur += c
        elif c in "([{":
            depth += 1; cur += c
        elif c in ")]}":
            depth -= 1; cur += c
        elif c == "," and depth == 0:
            parts.append(cur.strip()); cur = ""
        else:
            cur += c
        i += 1
    if cur.strip():
        parts.append(cur.strip())
    return parts
def match_paren(s, start):
    depth, q, i = 0, None, start
    while i < len(s):
        c = s[i]
        if q:
            if c == "\\": i += 2; continue
            if c == q: q = None
        elif c in "\"'": q = c
        elif c in "([{": depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0: return i
        i += 1
    return -1
for path in sys.argv[1:]:
    p = pathlib.Path(path); src = p.read_text()
    out = []
    for line in src.split("\n"):
        if len(line) <= LIMIT or not re.search(r"\.(execute|pin_translator)\(", line):
            out.append(line); continue
        m = re.search(r"\.execute\(([A-Z]\w+)\(", line) or re.search(r"\.pin_translator\(", line)
        if m is None:
            out.append(line); continue
        open_at = m.end() - 1
        close = match_paren(line, open_at)
        if close < 0:
            out.append(line); continue
        head, inner, tail = line[:open_at + 1], line[open_at + 1:close], line[close:]
        parts = split_top(inner)
        indent = " " * len(head)
        if len(indent) > 60:  # too deep: hang instead
            base = len(line) - len(line.lstrip())
            indent = " " * (base + 4)
            rows, cur = [head], indent
            for k, part in enumerate(parts):
                piece = part + ("," if k < len(parts) - 1 else "")
                if cur.strip() and len(cur) + 1 + len(piece) > LIMIT - 10:
                    rows.append(cur.rstrip()); cur = indent
                cur += ("" if not cur.strip() else " ") + piece
            rows.append(cur.rstrip() + tail)
            out.extend(rows); continue
        rows, cur = [], head
        for k, part in enumerate(parts):
            piece = part + ("," if k < len(parts) - 1 else "")
            if cur.strip() != head.strip() and cur != head and len(cur) + 1 + len(piece) + (len(tail) if k == len(parts) - 1 else 0) > LIMIT:
                rows.append(cur.rstrip()); cur = indent
            cur += ("" if cur == head or cur == indent else " ") + piece
        rows.append(cur + tail)
        out.extend(rows)
    new = "\n".join(out)
    if new != src:
        ast.parse(new)
        p.write_text(new)

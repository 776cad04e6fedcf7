"""Place the codemod's `from hsmsvc.hsm.commands import` / PinBlock lines in sorted position."""
import re, sys, pathlib, ast
for path in sys.argv[1:]:
    p = pathlib.Path(path); src = p.read_text()
    lines = src.split("\n")
    need_pin = "PinBlock(" in src and not re.search(r"^\s*from hsmsvc\.hsm\.model import[^\n]*\bPinBlock\b", src, re.M) \
        and not re.search(r"^\s+PinBlock,$", src, re.M)
    # pull out top-level commands import lines inserted by the codemod
    cmd = [i for i, l in enumerate(lines) if l.startswith("from hsmsvc.hsm.commands import ")]
    names = set()
    for i in reversed(cmd):
        names |= {n.strip() for n in lines[i].split(" import ", 1)[1].split(",")}
        del lines[i]
    if need_pin:
        m = [i for i, l in enumerate(lines) if l.startswith("from hsmsvc.hsm.model import ")]
        if m and "(" not in lines[m[0]]:
            i = m[0]
            have = [n.strip() for n in lines[i].split(" import ", 1)[1].split("#")[0].split(",")]
            comment = ("  #" + lines[i].split("#", 1)[1]) if "#" in lines[i] else ""
            lines[i] = "from hsmsvc.hsm.model import " + ", ".join(sorted(set(have) | {"PinBlock"}, key=str.lower)) + comment
            need_pin = False
    new = []
    if names:
        new.append(("hsmsvc.hsm.commands", "from hsmsvc.hsm.commands import " + ", ".join(sorted(names))))
    if need_pin:
        new.append(("hsmsvc.hsm.model", "from hsmsvc.hsm.model import PinBlock"))
    for mod, text in new:
        if len(text) > 100:
            head, body = text.split(" import ", 1)
            text = head + " import (\n" + "".join(f"    {n.strip()},\n" for n in body.split(",")) + ")"
        # top-level import lines
        tops = [i for i, l in enumerate(lines) if re.match(r"from (\S+) import|import (\S+)", l)]
        hs = [i for i in tops if lines[i].startswith("from hsmsvc.")]
        pos = None
        for i in hs:
            other = lines[i].split()[1]
            if other > mod:
                pos = i; break
        if pos is None:
            if hs:
                # after the last hsmsvc import statement (may be multi-line)
                i = hs[-1]
                while "(" in lines[i] and ")" not in lines[i]:
                    i += 1
                    while not lines[i].startswith(")"):
                        i += 1
                pos = i + 1
            else:
                pos = tops[-1] + 1 if tops else 0
        lines.insert(pos, text)
    out = "\n".join(lines)
    if out != src:
        ast.parse(out)
        p.write_text(out)

"""The payShield-style host-command door: a TCP listener speaking the Racal/Thales host-command
language, each command mapped onto hsmsvc's own use cases (``docs/host-commands.md``).

``frames`` reads and writes the length-prefixed messages, ``fields`` parses a command's fields,
``codes`` is the one table of error codes, ``registry`` holds the commands, and one module per
family (``pin``, ``keys``, ``mac``, ``data``, ``cards``, ``diag``) defines them. ``listener``
serves connections.
"""

"""``[hostcommands]`` in the server config: what is taken and what is refused, one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsmsvc.api import config
from hsmsvc.tomlfile import ConfigError

BASE = """
insecure_dev = true
[backend]
kind = "soft"
sealed_lmk = "lmk.sealed"
passphrase_env = "X"
"""


def _load(tmp_path: Path, text: str, top: str = "") -> config.ServerConfig:
    (tmp_path / "hsmsvc.toml").write_text(top + BASE + text)
    return config.load(str(tmp_path / "hsmsvc.toml"))


def test_the_table_is_read(tmp_path: Path) -> None:
    c = _load(tmp_path, """
[hostcommands]
listen = "127.0.0.1:1500"
header_length = 2
length_counts_header = false
discovery = true
""")
    assert c.hostcommands is not None
    assert (c.hostcommands.framing.header_length, c.hostcommands.framing.length_counts_header) == (2, False)
    assert c.hostcommands.discovery
    assert _load(tmp_path, "").hostcommands is None, "no table, no listener"


@pytest.mark.parametrize("table, says", [
    ('header_length = 300', "header_length"),
    ('in_flight = 0', "in_flight"),
    ('listen = "0.0.0.0:1500"', "loopback"),
    ('bogus = 1', "bogus"),
    ('[hostcommands.sources]\n"10.0.0.1/8" = "core"', "sources"),
])
def test_bad_settings_are_refused_by_name(tmp_path: Path, table: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, "[hostcommands]\n" + table)
    assert says in str(e.value)


def test_several_workers_need_a_fixed_port(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[hostcommands]\nlisten = "127.0.0.1:0"', top="workers = 2\n")
    assert "listen" in str(e.value) and "fixed port" in str(e.value)
    assert _load(tmp_path, '[hostcommands]\nlisten = "127.0.0.1:1500"', top="workers = 2\n").workers == 2


def test_the_deploy_examples_table_is_valid(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "deploy" / "hsmsvc.toml").read_text()
    table = text[text.index("# [hostcommands]"):]
    lines = [ln[2:] if ln.startswith("# ") else ln for ln in table.splitlines()]
    c = _load(tmp_path, "\n".join(lines).replace("0.0.0.0", "127.0.0.1").replace(
        '"10.20.0.0/16" = "core-banking"', ""))
    assert c.hostcommands is not None and c.hostcommands.framing.header_length == 4


def test_a_small_max_connections_needs_no_other_setting(tmp_path: Path) -> None:
    """Issue 36's fourth review: a per-source default of 256 refused max_connections = 100."""
    c = _load(tmp_path, "[hostcommands]\nmax_connections = 100\n")
    assert c.hostcommands is not None
    assert (c.hostcommands.principal_limit, c.hostcommands.pending_limit, c.hostcommands.pending_per_source) == (
        100, 50, 6)

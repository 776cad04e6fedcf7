"""``hsmsvc serve``: the gRPC server, from a TOML configuration and these overrides."""

from __future__ import annotations

import argparse
import sys

from hsmsvc.cli import backend
from hsmsvc.hsm import selftest

HELP = "run the gRPC server"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file (HSMSVC_* variables override it)")
    p.add_argument("--listen", help="address to bind, e.g. 127.0.0.1:8443 (port 0: any free port)")
    p.add_argument("--metrics-listen", help="Prometheus endpoint address; empty to disable")
    p.add_argument("--store", help="database URL")
    p.add_argument("--policy", help="authorization policy file (TOML)")
    p.add_argument("--insecure-dev", action="store_true", help="plaintext and one principal: development only")
    p.add_argument("--sealed", help="sealed LMK file (soft backend), instead of [backend] in the config")
    p.add_argument("--passphrase-env", help="environment variable holding the LMK passphrase "
                                            "(none for a share-sealed LMK: it starts sealed, see `hsmsvc unseal`)")
    p.add_argument("--passphrase-file", help="file holding the LMK passphrase")
    backend.secret_arguments(p)
    p.add_argument("--ready-file", help="write the bound ports here as JSON once serving")
    p.add_argument("--workers", type=int, help="server processes sharing the port (SO_REUSEPORT; default 1)")
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from hsmsvc.api import config as api_config
    from hsmsvc.api import logs, unseal, workers

    # Power-on self-test (40-70 ms, of some 2 s to ready), before anything is read or opened; each
    # worker process runs its own.
    failed = [r.name for r in selftest.run() if not r.passed]
    if failed:
        print(f"hsmsvc: power-on self-test failed: {', '.join(failed)}; not serving "
              "(`hsmsvc selfcheck` lists every test)", file=sys.stderr)
        return 1
    overrides: dict[str, object] = {
        "listen": args.listen, "metrics_listen": args.metrics_listen, "store": args.store, "policy": args.policy,
        "insecure_dev": True if args.insecure_dev else None,
        "workers": args.workers, "reuse_port": True if args.worker_index is not None else None,
    }
    if args.sealed:
        overrides["backend"] = {"kind": "soft", "sealed_lmk": args.sealed,
                                "passphrase_env": args.passphrase_env, "passphrase_file": args.passphrase_file,
                                "passphrase_fd": args.passphrase_fd,
                                "passphrase_credential": args.passphrase_credential}
    cfg = api_config.load(args.config, overrides)
    logs.configure(cfg.log_level)
    # A share-sealed LMK starts sealed, in one process: refused here, before any worker starts, otherwise.
    unseal.share_sealed(cfg)
    if cfg.workers > 1:
        return workers.supervise(cfg, args.argv, args.ready_file)
    if cfg.insecure_dev and args.worker_index in (None, 0):
        print("hsmsvc: --insecure-dev: plaintext gRPC and one all-powerful principal; never in production",
              file=sys.stderr)
    return workers.serve_here(cfg, args.ready_file)

"""`tools.bench.floor`: the floor server answers its two operations right, checked by tests/reference.py."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from hsmsvc_client.v1 import mac_service_pb2 as mm
from hsmsvc_client.v1 import pin_service_pb2 as pm
from tests import reference as ref

PAN = "4012345678909"


@pytest.mark.parametrize("request_ids", [False, True])
def test_the_floor_translates_and_macs_as_the_reference_does(tmp_path: Path, request_ids: bool) -> None:
    zin, zout, mak = (ref.odd_parity(secrets.token_bytes(16)) for _ in range(3))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"zpk_in": zin.hex(), "zpk_out": zout.hex(), "mak": mak.hex()}))
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "tools.bench.floor", "--keys", str(keys), "--ready-file",
                             str(ready), *(["--request-ids"] if request_ids else [])],
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        port = json.loads(ready.read_text())["port"]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            translate = ch.unary_unary("/hsmsvc.v1.PinService/TranslatePin",
                                       request_serializer=pm.TranslatePinRequest.SerializeToString,
                                       response_deserializer=pm.TranslatePinResponse.FromString)
            block = ref.tdes_ecb(zin, ref.iso0("1234", PAN))
            r, call = translate.with_call(pm.TranslatePinRequest(pin_block=block, pan=PAN), timeout=10)
            assert ref.decode_iso0(ref.tdes_ecb(zout, r.pin_block, decrypt=True), PAN) == "1234"
            ids = [v for k, v in call.trailing_metadata() if k == "x-request-id"]
            assert bool(ids) == request_ids
            with pytest.raises(grpc.RpcError) as e:
                translate(pm.TranslatePinRequest(pin_block=ref.tdes_ecb(zin, bytes(8)), pan=PAN), timeout=10)
            assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            mac = ch.unary_unary("/hsmsvc.v1.MacService/GenerateMac",
                                 request_serializer=mm.GenerateMacRequest.SerializeToString,
                                 response_deserializer=mm.GenerateMacResponse.FromString)
            data = secrets.token_bytes(61)  # padding method 1: zeros to a whole block
            assert mac(mm.GenerateMacRequest(data=data), timeout=10).mac == ref.retail_mac(mak, data + bytes(3))
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_command_counter_measures_commands_that_verify() -> None:
    # tools/bench/commands.py's measured process, without valgrind: a wrong ARQC or CVV would run as
    # fast or faster and count nothing worth quoting, so the answers are checked here.
    from tools.bench import commands

    arpc = commands._run("arqc", 1)
    assert isinstance(arpc, list) and len(arpc) == 1 and isinstance(arpc[0], bytes) and len(arpc[0]) == 4
    assert commands._run("cvv", 1) == [True]

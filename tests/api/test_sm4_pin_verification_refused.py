"""No SM4 PIN verification key (issue 33): a PVK for IBM 3624 offsets or Visa PVVs is two-key TDES.

Both methods are defined over DES: IBM 3624 enciphers the validation data under the PVK and
decimalizes the result (IBM CCA, "3624 PIN Verification algorithm",
https://www.ibm.com/docs/en/SSLTBW_2.3.0/com.ibm.zos.v2r3.csfb400/csfb4933.htm), the Visa PVV
enciphers the transformed security parameter under the PVK pair. A search of public documentation,
vendor pages and code, in English and Chinese, found no SM4 form of either published by a network
or an HSM vendor; so an SM4 PVK is refused when it is made or imported, before any key exists, with
INVALID_ARGUMENT and a message that says why, rather than computing an unpublished variant no
partner could check. The session's server is tests/api/conftest.py's.
"""

from __future__ import annotations

import grpc
import pytest

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ind
from tests.api.conftest import TABLE, Env, code_of, template

C = pb.MODE_OF_USE_MAC_GENERATE_VERIFY
REFUSAL = ("algorithm: IBM 3624 and Visa PVV need a two-key TDES PVK: no published method computes an offset or "
           "a PVV with SM4")
USAGES = [(pb.KEY_USAGE_PIN_VERIFICATION_IBM3624, TABLE), (pb.KEY_USAGE_PIN_VERIFICATION_VISA_PVV, "")]


def _pvk(key_id: str, alg: int, usage: int, table: str) -> key_pb.KeyTemplate:
    return template(key_id, pb.KEY_TYPE_PVK, alg, usage, C, decimalization_table=table)


@pytest.mark.parametrize(("usage", "table"), USAGES)
def test_an_sm4_pvk_is_not_generated(server: Env, usage: int, table: str) -> None:
    mgr = server.client("key-manager")
    key_id = f"sm4-pvk-gen-{usage}"
    code, details = code_of(mgr.keys.GenerateKey, key_pb.GenerateKeyRequest(
        template=_pvk(key_id, pb.ALGORITHM_SM4, usage, table)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details == REFUSAL
    code, _ = code_of(mgr.keys.GetKey, key_pb.GetKeyRequest(key=pb.KeyRef(key_id=key_id)))
    assert code is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("usage", "table"), USAGES)
def test_an_sm4_pvk_is_not_imported(server: Env, usage: int, table: str) -> None:
    """Under zmk-core, which carries PVKs in its legacy form: refused on the template, whatever
    the wrapped bytes."""
    clear = bytes(range(16))
    wrapped = ind.aes_ecb(ind.variant(server.clear["zmk"], "PVK"), clear)
    code, details = code_of(server.client("key-manager").keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-core"), wrapped_key=wrapped, kcv=ind.kcv("SM4", clear),
        template=_pvk(f"sm4-pvk-imp-{usage}", pb.ALGORITHM_SM4, usage, table)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details == REFUSAL


def test_other_pvk_algorithms_are_refused_without_the_sm4_reason(server: Env) -> None:
    code, details = code_of(server.client("key-manager").keys.GenerateKey, key_pb.GenerateKeyRequest(
        template=_pvk("aes-pvk", pb.ALGORITHM_AES_128, pb.KEY_USAGE_PIN_VERIFICATION_VISA_PVV, "")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == "algorithm: IBM 3624 and Visa PVV need a two-key TDES PVK"

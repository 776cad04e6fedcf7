"""Key diversification over gRPC (KeyService.DiversifyKey; issue 35, bank design 004 clause 6.2.2).

The KDK ``users.kdk`` is formed at the session server's set-up of pyemv's IMK value
(tests/api/conftest.py, CARD_KEYS), and the derived keys leave under ``dukpt.kif``, a K1 ZMK whose
clear value the set-up keeps. The option A step is EMV's card key derivation (tests/reference.py,
pinned to pyemv's HSM-checked card keys); its input is a hash of the purpose and the user's code.
"""

from __future__ import annotations

import hashlib

import grpc

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ref
from tests.api.conftest import PASSPHRASE, Env, code_of

H = bytes.fromhex


def _request(data: bytes, **kw: object) -> key_pb.DiversifyKeyRequest:
    fields: dict[str, object] = dict(master_key=pb.KeyRef(key_id="users.kdk"), kek=pb.KeyRef(key_id="dukpt.kif"),
                                     diversification_data=data, key_type=pb.KEY_TYPE_MAK,
                                     usage=pb.KEY_USAGE_MAC_CMAC, mode_of_use=pb.MODE_OF_USE_MAC_GENERATE_VERIFY)
    fields.update(kw)
    return key_pb.DiversifyKeyRequest(**fields)  # type: ignore[arg-type]


def test_a_users_key_leaves_only_as_a_tr31_block(server: Env) -> None:
    mgr = server.client("key-manager")
    r = mgr.keys.DiversifyKey(_request(b"EMP04217"))
    clear = ref.tr31_unwrap(server.clear["dukpt.kif"], r.key_block)[0]
    k0 = H("0123456789ABCDEFFEDCBA9876543210")
    digest = hashlib.sha256(b"hsmsvc key diversification\x00MAK/M6\x00EMP04217").digest()
    y = bytes([digest[0] | 0xA0]) + digest[1:8]  # a first nibble no card key's digits have
    assert clear == ref.option_a(k0, y) and r.kcv == ref.tdes_kcv(clear)
    assert r.key_block[5:9] == "M6TC" and r.master_version == 1
    # The KDK holds an IMK's value here (the fixture's): a card's digits as the code still give no card key.
    card = mgr.keys.DiversifyKey(_request(H("3456789012345600")))
    assert ref.tr31_unwrap(server.clear["dukpt.kif"], card.key_block)[0] != ref.emv_card_key(k0, "1234567890123456",
                                                                                              "00")
    # The derived key is of the KDK's algorithm and one of a user's types; under a K1 KEK only.
    for bad, field in ((_request(b""), "diversification_data"),
                       (_request(bytes(8), key_type=pb.KEY_TYPE_ZPK, usage=pb.KEY_USAGE_PIN_ENCRYPTION,
                                 mode_of_use=pb.MODE_OF_USE_ENCRYPT_DECRYPT), "key_type"),
                       (_request(bytes(8), usage=pb.KEY_USAGE_PIN_ENCRYPTION), "usage")):
        code, details = code_of(mgr.keys.DiversifyKey, bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details
    code, details = code_of(mgr.keys.DiversifyKey, _request(bytes(8), kek=pb.KeyRef(key_id="zmk-core")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "TR-31" in details
    # Key management: an operator may not.
    assert code_of(server.client("core-banking").keys.DiversifyKey, _request(bytes(8)))[0] == \
        grpc.StatusCode.PERMISSION_DENIED


def test_each_diversification_is_audited_with_the_users_code(server: Env) -> None:
    from hsmsvc.hsm.soft.backend import SoftBackend
    from hsmsvc.keys.store import KeyStore

    mgr = server.client("key-manager")
    r = mgr.keys.DiversifyKey(_request(b"EMP04217"))
    b = SoftBackend.from_sealed(next(server.log.parent.glob("lmk.sealed")), PASSPHRASE.encode())
    st = KeyStore(server.store_url, b)
    try:
        rows = [x for x in st.audit_rows() if x.action == "key.diversify" and x.key_id == "users.kdk"]
        assert any(b"EMP04217".hex().upper() in x.detail and r.kcv.hex().upper() in x.detail for x in rows)
        assert st.verify_audit().ok
    finally:
        st.close()
        b.close()

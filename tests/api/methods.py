"""Every gRPC method of hsmsvc's services, and which test principal may call each.

Shared by test_input_status.py and test_fuzz.py; a helper module, so neither test
module imports the other.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Final

from hsmsvc.service.authz import ROLE_METHODS, Role
from hsmsvc_client.v1 import card_service_pb2, ceremony_service_pb2, data_service_pb2, key_service_pb2
from hsmsvc_client.v1 import key_sync_service_pb2, terminal_service_pb2
from hsmsvc_client.v1 import mac_service_pb2, pin_service_pb2, signature_service_pb2, status_service_pb2

FILES = (key_service_pb2, pin_service_pb2, mac_service_pb2, data_service_pb2, key_sync_service_pb2,
         ceremony_service_pb2, status_service_pb2, signature_service_pb2, card_service_pb2,
         terminal_service_pb2)
METHODS = [(s, m) for f in FILES for s in f.DESCRIPTOR.services_by_name.values() for m in s.methods]

# A principal of the test policy (conftest.POLICY) holding each role.
HOLDERS: Final = {Role.OPERATOR: "core-banking", Role.MANAGER: "key-manager", Role.CUSTODIAN: "custodian-1",
                  Role.ISSUER: "pin-issuer", Role.REENCRYPTOR: "pin-reencryptor", Role.AUDITOR: "auditor"}


def who_may_call(service: Any, method: Any) -> str:
    """A principal of the test policy whose role allows the method, read from the policy's own table."""
    name = f"{service.name}.{method.name}"
    for role, holder in HOLDERS.items():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in ROLE_METHODS[role]):
            return holder
    raise AssertionError(f"no role of the test policy may call {name}")

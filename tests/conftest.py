import os

# The test process runs gRPC servers and clients, then forks for pexpect's pseudo-terminals. With
# gRPC's fork support on, its atfork handler restarted the poller in the forked child, which
# pexpect then stripped of every descriptor before exec: "Epoll1Poller ... epoll_wait error: Bad file
# descriptor" and a child killed by a signal (CI, tests/batch/test_reencrypt_operator.py). Set before
# grpc is first imported; children that exec start clean either way.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

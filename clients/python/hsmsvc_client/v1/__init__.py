"""Generated from proto/hsmsvc/v1 by tools/gen_proto.py; do not edit."""

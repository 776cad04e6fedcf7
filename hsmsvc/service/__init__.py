"""Use cases: policy, authorization, attempt limits and audit around the backend."""

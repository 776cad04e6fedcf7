"""Benchmarks and the pressure-test tool (``hsmsvc bench``); none of this runs in the test suite's hot loop."""

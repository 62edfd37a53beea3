"""Shared pytest configuration: registers the ``sim`` marker (RTL simulation tests)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "sim: RTL simulation test (Amaranth sim or Verilator)")

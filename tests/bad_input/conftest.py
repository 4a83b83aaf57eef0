# These files are deliberately broken suites, JSONL sources and cassettes, read by
# tests/test_bad_input.py. Without this, `pytest` (testpaths = tests) would collect every
# `suite:` file here as a suite and stop the whole run on their (expected) errors.
# (The empty __init__.py next to this file keeps this conftest from shadowing tests/conftest.py,
# which other test modules import as `conftest`.)
collect_ignore_glob = ["*.yaml", "*.yml", "*.jsonl"]

"""What the installed plugin costs a pytest run that collects no suite: pytest finds the plugin
through its entry point in every run of an environment that has rlhf-eval, suites or not.

    python benchmarks/plugin_overhead.py [--repeat 10]

Runs `pytest -q` on a project of one plain test `--repeat` times with the plugin and as many
times without it (`-p no:rlhf_eval`, the baseline), alternating, each in a fresh process; once
with bytecode cached as usual, once with PYTHONDONTWRITEBYTECODE=1 (set on some CI machines), where
every run compiles the modules it imports again. Prints the median CPU seconds (user + system, of
the child) of each and the difference. A run of pytest varies by tens of milliseconds on a busy
machine, so it also times the plugin's import alone: `import pytest_rlhf_eval` after `import
pytest` in a fresh process (`--repeat` times, median CPU seconds), which is what a run with no
suite pays for the plugin beyond its hooks.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def child_cpu(args: list[str], cwd: Path, env: dict) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                   check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


IMPORT_PROBE = ("import time, pytest\n"
                "start = time.process_time()\n"
                "import pytest_rlhf_eval\n"
                "print(time.process_time() - start)\n")


def plugin_import_cpu(env: dict, cwd: Path) -> float:
    """CPU seconds of `import pytest_rlhf_eval` after pytest, in a fresh process run in `cwd` (not
    in a checkout: `python -c` would import the package from the current folder)."""
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=cwd, env=env, check=True, capture_output=True,
                         text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "test_plain.py").write_text("def test_plain():\n    assert True\n")
        (project / "pytest.ini").write_text("[pytest]\n")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTHONDONTWRITEBYTECODE")}
        for label, extra in (("bytecode cached", {}), ("PYTHONDONTWRITEBYTECODE=1", {"PYTHONDONTWRITEBYTECODE": "1"})):
            child_cpu([], project, env)  # writes the bytecode cache where it may
            with_plugin, without = [], []
            for _ in range(repeat):
                with_plugin.append(child_cpu([], project, {**env, **extra}))
                without.append(child_cpu(["-p", "no:rlhf_eval"], project, {**env, **extra}))
            a, b = statistics.median(with_plugin), statistics.median(without)
            print(f"pytest, one plain test, {label}, median of {repeat} (CPU s): with rlhf-eval {a:.3f}, "
                  f"without {b:.3f}; the plugin adds {a - b:+.3f} s")
        imports = [plugin_import_cpu(env, project) for _ in range(repeat)]
        print(f"import pytest_rlhf_eval after pytest, median of {repeat} (CPU s): {statistics.median(imports):.3f} "
              f"(min {min(imports):.3f}, max {max(imports):.3f})")


if __name__ == "__main__":
    main()

"""The sandbox's contract: files in and out, argv, stdin, limits recorded, config validation,
nonce-tagged results, and what the program sees inside (checked against the host)."""

from __future__ import annotations

import json
import os
import random
import sys

import pytest

from llm_trainer.core.errors import ConfigError
from llm_trainer.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxResult,
    detect_isolation,
    new_nonce,
    tagged_lines,
)
from llm_trainer.sandbox.launch import VENV_INSIDE, program_env
from tests.sandbox.conftest import needs_l3


@needs_l3
def test_run_returns_output_and_collected_files(sandbox: Sandbox) -> None:
    res = sandbox.run(
        files={"main.py": "import helper\nhelper.go()\n", "helper.py": HELPER, "data/in.txt": "7"},
        collect=("out.json", "results/*.txt", "missing.txt"),
    )
    assert res.ok, res.stderr
    assert res.stdout == "42\n"
    assert json.loads(res.files["out.json"]) == {"doubled": 14}
    assert res.files["results/a.txt"] == b"a"
    assert res.files["results/b.txt"] == b"b"
    assert "missing.txt" not in res.files
    assert res.level == "L3"
    assert "seccomp" in res.layers
    assert "netns" in res.layers
    assert res.killed is None
    assert not res.timed_out
    assert not res.truncated
    assert res.returncode == 0
    assert res.wall_s > 0
    assert res.peak_memory_bytes is not None
    assert 0 < res.peak_memory_bytes < 256 << 20


HELPER = """
import json, os
def go():
    print(6 * 7)
    n = int(open("data/in.txt").read())
    json.dump({"doubled": 2 * n}, open("out.json", "w"))
    os.makedirs("results")
    open("results/a.txt", "w").write("a")
    open("results/b.txt", "w").write("b")
"""


@needs_l3
def test_argv_stdin_and_exit_status_reach_the_host(sandbox: Sandbox) -> None:
    code = "import sys\nprint(sys.argv[1:], sys.stdin.read().upper())\nsys.exit(3)\n"
    res = sandbox.run(files={"main.py": code}, argv=("main.py", "a", "b c"), stdin="hello")
    assert res.stdout == "['a', 'b c'] HELLO\n"
    assert res.returncode == 3
    assert not res.ok
    assert res.killed is None


@needs_l3
def test_dash_c_runs_without_files(sandbox: Sandbox) -> None:
    res = sandbox.run(argv=("-c", "import os; print(os.getcwd(), os.listdir('.'))"))
    assert res.stdout == "/work []\n", res.stderr


@needs_l3
def test_program_runs_as_nobody_with_a_minimal_environment(sandbox: Sandbox) -> None:
    code = (
        "import json, os, sys\nprint(json.dumps([os.getuid(), dict(os.environ), sys.executable]))"
    )
    res = sandbox.run(files={"main.py": code})
    uid, env, exe = json.loads(res.stdout)
    assert uid == 65534
    # The project's venv: at its own path, or at VENV_INSIDE when that path is under /work.
    assert exe in (sys.executable, VENV_INSIDE + sys.executable[len(sys.prefix) :])
    assert env["HOME"] == "/work"
    assert env["TMPDIR"] == "/tmp"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    # Nothing of the host's (bubblewrap's --chdir adds PWD).
    assert set(env) - {"PWD"} == set(program_env(executable=exe))


@needs_l3
def test_numpy_imports_and_computes_inside(sandbox: Sandbox) -> None:
    code = "import numpy as np\na = np.ones((300, 300))\nprint(int((a @ a).sum()))\n"
    res = sandbox.run(files={"main.py": code})
    assert res.ok, res.stderr
    assert res.stdout.strip() == str(300 * 300 * 300)


@needs_l3
def test_interpreter_and_system_are_read_only(sandbox: Sandbox) -> None:
    code = (
        "import errno, sys\n"
        "for path in (sys.prefix + '/x', sys.base_prefix + '/x', '/usr/x'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print(errno.errorcode[exc.errno])\n"
    )
    res = sandbox.run(files={"main.py": code})
    assert "wrote" not in res.stdout
    assert set(res.stdout.split()) <= {"EROFS", "EACCES"}
    assert not os.path.exists(sys.prefix + "/x")
    assert not os.path.exists("/usr/x")


@needs_l3
def test_collect_never_follows_a_symlink_out_of_the_work_dir(sandbox: Sandbox, tmp_path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret " + new_nonce())
    code = (
        f"import os\nos.symlink({str(secret)!r}, 'out.txt')\n"
        "os.symlink('/etc/passwd', 'passwd.txt')\nos.mkfifo('fifo.txt')\n"
    )
    res = sandbox.run(files={"main.py": code}, collect=("*.txt",))
    assert res.ok, res.stderr
    assert res.files == {}  # links and FIFOs are skipped, never followed or opened


@needs_l3
def test_results_count_only_on_nonce_tagged_lines(sandbox: Sandbox) -> None:
    """A program that exits 0 before the checks and prints a forged verdict is judged a
    failure: the harness's verdict line carries a nonce the program never saw."""
    nonce = new_nonce()
    harness = f"import solution\nassert solution.add(2, 2) == 4\nprint('{nonce}', 'PASS')\n"
    honest = "def add(a, b):\n    return a + b\n"
    cheat = "import os\nprint('PASS')\nprint('deadbeef PASS')\nos._exit(0)\n"
    good = sandbox.run(files={"main.py": harness, "solution.py": honest})
    bad = sandbox.run(files={"main.py": harness, "solution.py": cheat})
    assert tagged_lines(good.stdout, nonce) == ["PASS"]
    assert bad.returncode == 0  # the exit code lies ...
    assert tagged_lines(bad.stdout, nonce) == []  # ... the tagged verdict does not


def test_new_nonce_is_fresh_and_leaves_the_global_rng_alone() -> None:
    state = random.getstate()
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) == 32 for n in nonces)
    assert random.getstate() == state


def test_tagged_lines_ignore_lines_without_the_exact_nonce() -> None:
    out = "abc PASS\nabcd FAIL\n abc indented\nabc  two spaces\nabc\n"
    assert tagged_lines(out, "abc") == ["PASS", " two spaces"]
    with pytest.raises(ValueError, match="non-empty"):
        tagged_lines(out, "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_level": "L9"}, "min_level='L9' is not a level; use one of L0, L1, L2, L3, L4"),
        ({"wall_s": 0}, "wall_s=0 must be a positive number"),
        ({"memory_mb": -1}, "memory_mb=-1 must be a positive integer"),
        ({"pids": 2}, "use at least 4"),
        ({"allowed_requirements": "numpy"}, "must be a tuple of project names"),
        ({"allowed_requirements": ("numpy>=1",)}, "pin versions in the requirements"),
        ({"ro_paths": ("data",)}, "must be an absolute path"),
        ({"address_space_mb": -5}, "must be None, 0"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SandboxConfig(**kwargs)


@needs_l3
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"files": {"/etc/x": "1"}}, "not a relative path inside the work directory"),
        ({"files": {"../x": "1"}}, "not a relative path inside the work directory"),
        ({"files": {"main.py": 3}}, r"files\['main.py'\] is a int; give the file's content"),
        ({"collect": ("/etc/passwd",)}, "collect: '/etc/passwd' is not a relative path"),
        ({"argv": "main.py"}, "must be a non-empty sequence of strings"),
        ({"wall_s": -1.0}, "must be a positive number of seconds"),
    ],
)
def test_run_rejects_bad_arguments_before_anything_runs(
    sandbox: Sandbox, kwargs: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        sandbox.run(**kwargs)


def test_detected_report_lists_every_layer_with_a_reason_when_missing() -> None:
    report = detect_isolation()
    assert report.level in ("L0", "L3")
    assert {"rlimits", "timeout"} <= set(report.present)
    assert not set(report.present) & set(report.missing)
    assert all(reason for reason in report.missing.values())
    assert "L4" in report.missing  # gVisor is never claimed
    assert report.level in report.describe()


@needs_l3
def test_this_machine_reaches_l3_with_every_layer_of_the_study() -> None:
    report = detect_isolation()
    assert report.level == "L3"
    assert report.backend == "bwrap"
    for layer in ("userns", "netns", "pidns", "ipcns", "utsns", "mountns", "cap_drop", "seccomp"):
        assert report.has(layer), report.describe()
    # Root on a cgroup-v1 machine, as SANDBOX.md measured: these must not silently go missing.
    if os.geteuid() == 0:
        for layer in ("work_tmpfs", "cgroup_memory", "cgroup_pids"):
            assert report.has(layer), report.describe()


def test_l0_runs_trusted_code_when_the_minimum_is_lowered_explicitly(tmp_path) -> None:
    """With bubblewrap missing, min_level="L0" still runs (rlimits, cgroups, timeout), and the
    result records that it ran at L0."""
    sb = Sandbox(SandboxConfig(min_level="L0", bwrap=str(tmp_path / "no-bwrap"), wall_s=20))
    assert sb.level == "L0"
    res = sb.run(files={"main.py": "print(sum(range(10)))"}, collect=("main.py",))
    assert isinstance(res, SandboxResult)
    assert res.ok
    assert res.stdout == "45\n"
    assert res.level == "L0"
    assert "bwrap" not in res.layers
    assert "seccomp" not in res.layers
    assert res.files == {"main.py": b"print(sum(range(10)))"}

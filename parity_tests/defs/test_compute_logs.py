"""Steps' stdout/stderr capture (resources/compute_logs.py): what a step writes, from Python, from
native code or from a process it starts, reaches both the capture file the UI reads and the
terminal, and no helper process is started (Dagster's manager starts four per step)."""

import subprocess
import sys
import textwrap

# Run in a fresh interpreter: the capture rewires file descriptors 1 and 2, which pytest owns.
SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    from unittest import mock
    from parity_pipeline.resources.compute_logs import TeeComputeLogManager

    base, terminal = sys.argv[1], sys.argv[2]
    out = os.open(terminal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(out, 2)
    manager = TeeComputeLogManager.from_config_value(None, {"base_dir": base})
    key = ["run", "step"]
    real_popen = subprocess.Popen
    started = []
    def counting_popen(*args, **kwargs):
        started.append(args[0])
        return real_popen(*args, **kwargs)
    with mock.patch.object(subprocess, "Popen", counting_popen):
        with manager.capture_logs(key):
            print("python line", flush=True)
            print("error line", file=sys.stderr, flush=True)
            os.write(1, b"native line\\n")
            helper = started.copy()
            real_popen(["echo", "child line"]).wait()
    print("after capture", flush=True)
    data = manager.get_log_data(key)
    sys.stderr.write(repr((helper, manager.is_capture_complete(key), data.stdout, data.stderr)))
""")


def test_capture_reaches_the_file_and_the_terminal_without_helper_processes(tmp_path):
    terminal = tmp_path / "terminal.txt"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "logs"), str(terminal)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = terminal.read_text()
    helper, complete, stdout, stderr = eval(shown[shown.index("(["):])  # noqa: S307 (our repr)
    assert helper == []  # Dagster's manager: tail and a watcher per stream
    assert complete
    assert stdout.decode().splitlines() == ["python line", "native line", "child line"]
    assert stderr.decode().splitlines() == ["error line"]
    before = shown[:shown.index("([")]
    for line in ("python line", "error line", "native line", "child line", "after capture"):
        assert line in before.splitlines(), shown
    assert "after capture" not in stdout.decode()  # the capture ended with its block

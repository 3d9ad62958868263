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

    base, terminal_out, terminal_err = sys.argv[1], sys.argv[2], sys.argv[3]
    for fd, terminal in ((1, terminal_out), (2, terminal_err)):
        os.dup2(os.open(terminal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
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
    # each stream has a terminal of its own: the two copying threads write independently, so on
    # one shared terminal their lines may interleave mid-line (as two processes' output would)
    terminal_out, terminal_err = tmp_path / "terminal.out", tmp_path / "terminal.err"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "logs"),
                           str(terminal_out), str(terminal_err)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown_err = terminal_err.read_text()
    helper, complete, stdout, stderr = eval(shown_err[shown_err.index("(["):])  # noqa: S307
    assert helper == []  # Dagster's manager: tail and a watcher per stream
    assert complete
    assert stdout.decode().splitlines() == ["python line", "native line", "child line"]
    assert stderr.decode().splitlines() == ["error line"]
    shown_out = terminal_out.read_text()
    assert shown_out.splitlines() == ["python line", "native line", "child line", "after capture"]
    assert shown_err[:shown_err.index("([")].splitlines() == ["error line"]
    assert "after capture" not in stdout.decode()  # the capture ended with its block

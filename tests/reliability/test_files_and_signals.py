"""Issue 11, part A: never destroy a user's file, honour Ctrl-C, strict JSON, optional extras, --version.

Every command runs as a real subprocess (`python -c ... main([...])`). Interrupts are real SIGINTs, sent once
the child has started simulating: a prelude patches Simulator.run to write the simulating process's pid to a
marker file first, and the test polls for that file (bounded waits, no fixed sleeps).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXP = ROOT / "tests" / "validation" / "data" / "ip_codegen"  # an inference-perf experiment folder (small)
SMALL = ["--num-requests", "5", "--prompt-tokens", "64", "--output-tokens", "8"]
MARK = """
import os, servesim.engine.simulator as _s
_run = _s.Simulator.run
def _marked(self, *a, **k):
    p = os.environ['SERVESIM_TEST_MARKER']
    if not os.path.exists(p):  # a temp name per process: two pool workers may both get here
        tmp = f"{p}.{os.getpid()}.tmp"
        with open(tmp, 'w') as fh: fh.write(str(os.getpid()))
        os.replace(tmp, p)
    return _run(self, *a, **k)
_s.Simulator.run = _marked
"""


def cli(argv: list[str], prelude: str = "") -> list[str]:
    """The command line of a subprocess that runs `servesim argv` after `prelude`."""
    return [sys.executable, "-c", f"{prelude}\nfrom servesim.cli import main\nmain({argv!r})"]


def run(argv: list[str], cwd: Path, prelude: str = "", timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cli(argv, prelude), cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> str:
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("servesim: error: ") and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind (the writer's are .NAME.*.tmp)."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- where writes go


def test_symlink_target_is_written_and_the_link_kept(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    p = run(["run", *SMALL, "-o", str(link)], tmp_path)
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and os.readlink(link) == target.name
    assert json.loads(target.read_text())["summary"]["completed"] == 5
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to("made-by-servesim.csv")  # a dangling link: its target is created
    assert run(["run", *SMALL, "--requests-csv", str(dangling)], tmp_path).returncode == 0
    assert dangling.is_symlink() and (tmp_path / "made-by-servesim.csv").read_text().startswith("id,")
    assert leftovers(tmp_path) == []


def test_fifo_is_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # A non-blocking reader first, so the writer's open() returns at once; the output (~4 KB) fits the pipe buffer.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        p = run(["run", *SMALL, "-o", str(fifo)], tmp_path, timeout=120)
        assert p.returncode == 0, p.stderr
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO
    assert json.loads(data)["summary"]["completed"] == 5


def test_character_devices_are_written_in_place_never_replaced(tmp_path):
    p = run(["run", *SMALL, "-o", "/dev/null", "--requests-csv", "/dev/null"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    if os.path.exists("/dev/full"):  # writes fail with ENOSPC: one line, and the device node stays
        one_line_error(run(["run", *SMALL, "-o", "/dev/full"], tmp_path), "--output /dev/full", "No space left")
        assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


def test_dev_stdout_is_written_in_place_and_a_redirected_log_is_kept(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("earlier line\n")
    with log.open("a") as fh:  # `servesim run -o /dev/stdout >> log.txt`
        p = subprocess.run(cli(["run", *SMALL, "-o", "/dev/stdout", "--json"]), cwd=tmp_path, stdout=fh,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    text = log.read_text()
    assert text.startswith("earlier line\n") and text.count('"servesim_version"') == 1
    piped = run(["run", *SMALL, "-o", "/dev/stdout", "--json"], tmp_path)  # a pipe
    assert piped.returncode == 0 and piped.stdout.count('"servesim_version"') == 1


def test_sockets_and_folders_are_refused(tmp_path):
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
        one_line_error(run(["run", *SMALL, "-o", str(sock_path)], tmp_path), "socket")
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        sock.close()
    one_line_error(run(["run", *SMALL, "-o", str(tmp_path)], tmp_path), "is a folder")


def test_new_files_follow_the_umask_and_overwritten_files_keep_their_mode(tmp_path):
    p = run(["run", *SMALL, "-o", "new.json", "--requests-csv", "new.csv"], tmp_path, preexec_fn=lambda: os.umask(0o027))
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "new.csv").st_mode) == 0o640
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o604)
    assert run(["run", *SMALL, "-o", "kept.json"], tmp_path, preexec_fn=lambda: os.umask(0o077)).returncode == 0
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o604 and json.loads(kept.read_text())["summary"]


# ---------------------------------------------------------------- an output is never an input or another output


def _inputs(tmp: Path) -> None:
    (tmp / "t.csv").write_text("arrival_time_s,input_tokens,output_tokens\n0,10,5\n0.5,12,4\n")
    (tmp / "w.yaml").write_text("input_tokens: 64\noutput_tokens: 8\narrival: {process: poisson, rate: 4}\nnum_requests: 5\n")
    (tmp / "wt.yaml").write_text("trace: t.csv\n")
    (tmp / "s.yaml").write_text("base: {workload: w.yaml}\ngrid: {rate: [2, 4]}\n")
    (tmp / "link-to-trace.csv").symlink_to("t.csv")


OVERLAPS = [
    (["run", "--trace", "t.csv", "--requests-csv", "t.csv"], "is the input --trace"),
    (["run", "--trace", "t.csv", "-o", "link-to-trace.csv"], "is the input --trace"),
    (["run", "--trace", "./sub/../t.csv", "--requests-csv", "t.csv"], "is the input --trace"),
    (["run", "--workload", "w.yaml", "-o", "w.yaml"], "is the input --workload"),
    (["run", "--workload", "wt.yaml", "--requests-csv", "t.csv"], "is the input --workload trace"),
    (["run", *SMALL, "-o", "x.out", "--requests-csv", "x.out"], "is the same file as --output"),
    (["capacity", "--slo", "ttft_p99_ms=500", "--workload", "w.yaml", "-o", "w.yaml"], "is the input --workload"),
    (["validate", str(EXP), "-o", str(EXP / "config.yaml")], "is the input experiment"),
    (["calibrate", str(EXP), "--report", str(EXP / "profile.yaml")], "is the input experiment"),
    (["calibrate", str(EXP), "-o", "c.json", "--report", "c.json"], "is the same file as --output"),
    (["sweep", "s.yaml", "-o", "r.jsonl", "--plot", "s.yaml"], "is the input SPEC"),
    (["sweep", "s.yaml", "-o", "r.jsonl", "--plot", "w.yaml"], "is the input SPEC base.workload"),
    (["sweep", "s.yaml", "-o", "r.jsonl", "--plot", "r.jsonl"], "is the same file as --output"),
]


@pytest.mark.parametrize("argv,words", OVERLAPS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in OVERLAPS])
def test_an_output_equal_to_an_input_or_another_output_is_refused_before_any_work(tmp_path, argv, words):
    _inputs(tmp_path)
    (tmp_path / "sub").mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    exp_before = {p.name: p.read_bytes() for p in EXP.iterdir()}
    one_line_error(run(argv, tmp_path, prelude=MARK, env={**os.environ, "SERVESIM_TEST_MARKER": str(tmp_path / "started")}), words)
    assert not (tmp_path / "started").exists()  # refused before any simulation
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # nothing written or changed
    assert {p.name: p.read_bytes() for p in EXP.iterdir()} == exp_before


# ---------------------------------------------------------------- Ctrl-C


def _sigint_default() -> None:
    # A test run started as a background job (or by a CI runner) may inherit SIGINT ignored; a Python started so
    # never installs its KeyboardInterrupt handler. The commands under test start as a terminal would start them.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(argv: list[str], tmp: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Start argv, wait until it simulates, send SIGINT; return the finished process and the simulating pid."""
    marker = tmp / "started"
    proc = subprocess.Popen(cli(argv, MARK), cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SERVESIM_TEST_MARKER": str(marker)}, preexec_fn=_sigint_default)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, f"exited {proc.returncode} before simulating: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "never started simulating"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), int(marker.read_text())


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


BIG_SWEEP = "base: {workload: {input_tokens: 512, output_tokens: 256, arrival: {process: poisson, rate: 40}, num_requests: 20000}}\n" \
            "grid: {rate: [30, 40, 50, 60]}\n"
INTERRUPTS = {
    "run": ["run", "--num-requests", "200000", "-o", "out.json", "--requests-csv", "out.csv"],
    "sweep": ["sweep", "big.yaml", "-o", "out.jsonl"],
    "sweep -j 2": ["sweep", "big.yaml", "-o", "out.jsonl", "-j", "2"],
    "capacity -j 2": ["capacity", "--slo", "ttft_p99_ms=500", "--num-requests", "20000", "-m", "llama-2-7b-hf", "-m", "mistral-7b-v0.1",
                      "-j", "2", "-o", "out.json"],
    "validate": ["validate", "--suite", "inference-perf-h100", "-o", "out.json"],
    "calibrate": ["calibrate", "--suite", "seed13", "-o", "out.json", "--report", "out2.json"],
    "calibrate --workers 2": ["calibrate", "--suite", "seed13", "--cv", "leave-one-model-out", "--workers", "2", "-o", "out.json"],
    "experiment h2b": ["experiment", "h2b", "--output-dir", "h2b"],
}


@pytest.mark.parametrize("name", sorted(INTERRUPTS))
def test_ctrl_c_exits_130_with_one_line_and_leaves_no_file(tmp_path, name):
    (tmp_path / "big.yaml").write_text(BIG_SWEEP)
    p, pid = _interrupt(INTERRUPTS[name], tmp_path)
    assert p.returncode == 130, (p.returncode, p.stderr[-2000:])
    assert [l for l in p.stderr.splitlines() if l.strip()] == ["servesim: interrupted"], p.stderr[-2000:]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["big.yaml", "started"]  # no output, no empty .jsonl, no temp file
    assert _gone(pid)  # the simulating worker (or the command itself) has ended: pools are shut down


def test_a_shell_chain_stops_at_an_interrupted_command(tmp_path):
    # `servesim ... && next`: the exit code must reach the shell.
    script = shlex.join(cli(["run", "--num-requests", "200000"], MARK)) + " && echo NEXT-RAN"
    proc = subprocess.Popen(["sh", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SERVESIM_TEST_MARKER": str(tmp_path / "started")}, preexec_fn=_sigint_default)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else ""
            time.sleep(0.02)
        os.kill(int((tmp_path / "started").read_text()), signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "NEXT-RAN" not in out, (proc.returncode, out, err)


def test_an_interrupted_sweep_keeps_its_finished_points_and_resumes_to_the_same_bytes(tmp_path):
    spec = "base: {workload: {input_tokens: 256, output_tokens: 64, arrival: {process: poisson, rate: 20}, num_requests: 1500}}\n" \
           "grid: {rate: [10, 20, 30, 40, 50, 60, 70, 80]}\n"
    (tmp_path / "s.yaml").write_text(spec)
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(cli(["sweep", "s.yaml", "-o", "r.jsonl", "-j", "2"]), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < deadline, "sweep ended before any point finished"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    kept = [json.loads(l) for l in out.read_text().splitlines()]
    assert 1 <= len(kept) < 8 and all(r["summary"]["completed"] == 1500 for r in kept)
    resumed = run(["sweep", "s.yaml", "-o", "r.jsonl", "-j", "2"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({8 - len(kept)} run now, {len(kept)} from" in resumed.stdout
    fresh = run(["sweep", "s.yaml", "-o", "fresh.jsonl"], tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert out.read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()  # grid order, same bytes as one uninterrupted -j 1


# ---------------------------------------------------------------- strict JSON


def test_json_writer_refuses_non_finite_numbers_naming_the_field(tmp_path):
    from servesim.config.outfile import write_json
    from servesim.errors import ServesimError
    from servesim.latency.calibration import Calibration, save_calibration

    with pytest.raises(ServesimError, match=r"--output .*a\.json: summary\.ttft_ms\[1\]=nan: not a finite number"):
        write_json(tmp_path / "a.json", {"summary": {"ttft_ms": [1.0, float("nan")]}})
    with pytest.raises(ServesimError, match=r"theta\.gemm_memory_s=inf"):
        save_calibration(Calibration({"gemm_memory_s": 1e308 * 10}), tmp_path / "c.json")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp file


def test_huge_calibration_theta_never_reaches_a_json_file(tmp_path):
    cal = json.loads((ROOT / "src/servesim/data/calibration/default.json").read_text())
    cal["theta"] = {k: 1e308 for k in cal["theta"]}
    (tmp_path / "huge.json").write_text(json.dumps(cal))
    p = run(["run", *SMALL, "--calibration", "huge.json", "-o", "r.json"], tmp_path)
    # Refused by the calibration loader or, failing that, by the strict writer: exit 2, no traceback.
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.splitlines()[-1].startswith("servesim: error: ")
    assert not (tmp_path / "r.json").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_calibrate_fit_window_must_be_finite(tmp_path, value):
    one_line_error(run(["calibrate", str(EXP), "--fit-window", value, "-o", "c.json"], tmp_path), "--fit-window")
    assert not (tmp_path / "c.json").exists()


# ---------------------------------------------------------------- optional extras missing

NO_SCIPY = "import sys; sys.modules['scipy'] = None; sys.modules['scipy.optimize'] = None"
NO_MPL = "import sys; sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None"


def test_calibrate_without_scipy_says_what_to_install(tmp_path):
    p = run(["calibrate", "--suite", "seed13", "-o", "c.json"], tmp_path, prelude=NO_SCIPY)
    one_line_error(p, "servesim[calibrate]", "scipy")
    assert not (tmp_path / "c.json").exists()


def test_h2b_without_matplotlib_writes_its_report_and_skips_the_chart(tmp_path):
    # Two of the 13 experiments keep the test short; the command path is the full one.
    prelude = NO_MPL + "\nimport servesim.validation as v; _ls = v.load_suite; v.load_suite = lambda n: _ls(n)[:2]"
    p = run(["experiment", "h2b", "--output-dir", "out"], tmp_path, prelude=prelude)
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["report.md", "results.json"]
    assert "chart tpot_by_experiment.png skipped: matplotlib is not installed" in p.stderr
    assert "--plots" not in p.stderr + p.stdout and "Traceback" not in p.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())


def test_h2b_output_dir_that_cannot_be_written_is_one_line_before_any_work(tmp_path):
    env = {**os.environ, "SERVESIM_TEST_MARKER": str(tmp_path / "started")}
    targets = ["/proc/self/servesim-h2b"]  # cannot be created, even by root
    if os.geteuid() != 0:  # permission bits only bind non-root users
        (tmp_path / "ro").mkdir(mode=0o555)
        targets.append(str(tmp_path / "ro" / "out"))
    for target in targets:
        one_line_error(run(["experiment", "h2b", "--output-dir", target], tmp_path, prelude=MARK, env=env), "--output-dir", target)
        assert not (tmp_path / "started").exists()


@pytest.mark.parametrize("argv", [
    ["validate", str(EXP), "--plots", "plots"],
    ["sweep", "s.yaml", "-o", "r.jsonl", "--plot", "p.png"],
], ids=["validate --plots", "sweep --plot"])
def test_plots_without_matplotlib_are_refused_before_any_work(tmp_path, argv):
    _inputs(tmp_path)
    env = {**os.environ, "SERVESIM_TEST_MARKER": str(tmp_path / "started")}
    one_line_error(run(argv, tmp_path, prelude=NO_MPL + "\n" + MARK, env=env), "needs matplotlib", "servesim[plot]")
    assert not (tmp_path / "started").exists() and not (tmp_path / "r.jsonl").exists() and not (tmp_path / "plots").exists()


def test_sweep_plot_into_a_missing_folder_is_refused_before_any_point(tmp_path):
    _inputs(tmp_path)
    env = {**os.environ, "SERVESIM_TEST_MARKER": str(tmp_path / "started")}
    one_line_error(run(["sweep", "s.yaml", "-o", "r.jsonl", "--plot", "nodir/p.png"], tmp_path, prelude=MARK, env=env),
                   "--plot nodir/p.png", "does not exist")
    assert not (tmp_path / "started").exists() and not (tmp_path / "r.jsonl").exists()


# ---------------------------------------------------------------- small


def test_version(tmp_path):
    from importlib.metadata import version

    p = run(["--version"], tmp_path)
    assert p.returncode == 0 and p.stdout == f"servesim {version('servesim')}\n"


def test_run_progress_reaches_the_total_and_names_what_follows():
    # 200,000 is not a multiple of the 256-record update stride: the bar used to stop at 199,936.
    from servesim.cli.run import _Progress

    class Console:
        is_terminal = True

    class Bar:
        def __init__(self):
            self.updates = []

        def update(self, task, **kw):
            self.updates.append(kw)

        def stop(self):
            pass

    prog = _Progress(Console(), 1000)
    prog.bar, prog.task = Bar(), 0
    for _ in range(1000):
        prog.advance(None)
    assert prog.bar.updates[-1] == {"completed": 1000, "description": "summarising (exact percentiles)"}
    assert [u["completed"] for u in prog.bar.updates] == [256, 512, 768, 1000]
    prog.phase("writing r.json")
    assert prog.bar.updates[-1] == {"completed": 1000, "description": "writing r.json"}

"""Windows and macOS traits, emulated on Linux (the portability audit 27; its harness emulated each trait the same
way: a text-mode ``os.open``, ``os.kill`` as on Windows, no ``os.set_blocking``, a file held open by another
program, a cp1252 stdout, no /proc).  Each test switches on one trait for one call; what Linux does is unchanged
and tested elsewhere (and here, where a Linux text must stay as it is)."""
from __future__ import annotations

import os
import socket
import sys
import types

import pytest

from mcproton._io import lock


class _OsAs:
    """``os`` as one module sees it, with some names replaced (``name="nt"``): only that module is fooled, not
    pathlib (whose ``Path()`` refuses to be made on Linux while ``os.name`` is "nt")."""

    def __init__(self, **names):
        self.__dict__.update(names)

    def __getattr__(self, name):
        return getattr(os, name)


def _text_mode_descriptors(monkeypatch) -> list[bytes]:
    """Windows' MSVC runtime: ``os.open`` without ``os.O_BINARY`` gives a text-mode descriptor, on which ``os.write``
    stores each line feed as CR LF (as the audit's harness, EMU_TEXTMODE).  Returns the data so converted."""
    real_open, real_write, real_close = os.open, os.write, os.close
    text_fds: set[int] = set()
    converted: list[bytes] = []
    o_binary, o_text = 0x8000, 0x4000

    def fake_open(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags & ~(o_binary | o_text), mode, dir_fd=dir_fd)
        if not flags & o_binary and not os.path.isdir(path):
            text_fds.add(fd)
        return fd

    def fake_write(fd, data):
        if fd in text_fds and b"\n" in bytes(data):
            converted.append(bytes(data))
            real_write(fd, bytes(data).replace(b"\n", b"\r\n"))
            return len(data)
        return real_write(fd, data)

    def fake_close(fd):
        text_fds.discard(fd)
        return real_close(fd)

    monkeypatch.setattr(os, "O_BINARY", o_binary, raising=False)
    monkeypatch.setattr(os, "O_TEXT", o_text, raising=False)
    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)
    monkeypatch.setattr(os, "close", fake_close)
    return converted


def test_lock_files_are_removed_where_os_open_is_in_text_mode(tmp_path, monkeypatch):
    """F1: on Windows the lock file was opened without O_BINARY, so its JSON's line feed was stored as CR LF, its
    bytes differed from what the run wrote, and no lock file was ever removed: the next run on the same output was
    refused as "being written by another run now"."""
    converted = _text_mode_descriptors(monkeypatch)
    targets = [tmp_path / "w.h5", tmp_path / "w.png"]
    with lock.OutputLock(targets, "--out") as held:
        assert len(held.held) == 2
        for p in held.held:
            assert p.read_bytes() == held.wrote[p] and not p.read_bytes().endswith(b"\r\n")
    assert not converted
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a lock file was left behind"


def test_a_finished_runs_locks_are_gone_where_os_open_is_in_text_mode(small_cfg, tmp_path, monkeypatch, capsys):
    """F1, the command: two runs on one --out, both exit 0, and no lock file is left."""
    from mcproton.cli import main

    _text_mode_descriptors(monkeypatch)
    cfg = small_cfg(2000)
    out = tmp_path / "o" / "w.h5"
    for _ in range(2):
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".lock")]


class _FakeWinapi(types.ModuleType):
    """``_winapi`` of a Windows CPython for the processes of ``alive`` (exit code STILL_ACTIVE), ``ended`` (opened,
    exit code 0: a handle still held somewhere) and ``denied`` (another user's); any other pid has no process
    (WinError 87)."""

    def __init__(self, alive=(), ended=(), denied=()):
        super().__init__("_winapi")
        self.alive, self.ended, self.denied = set(alive), set(ended), set(denied)
        self.open_handles: set[int] = set()

    @staticmethod
    def _error(errno_, text, winerror):
        exc = (PermissionError if winerror == 5 else OSError)(errno_, text)
        exc.winerror = winerror
        return exc

    def OpenProcess(self, access, inherit, pid):
        assert access == lock._PROCESS_QUERY_LIMITED_INFORMATION and inherit is False
        if pid in self.denied:
            raise self._error(13, "Access is denied", 5)
        if pid not in self.alive | self.ended:
            raise self._error(22, "The parameter is incorrect", 87)
        self.open_handles.add(pid + 10_000)
        return pid + 10_000

    def GetExitCodeProcess(self, handle):
        return lock._STILL_ACTIVE if handle - 10_000 in self.alive else 0

    def CloseHandle(self, handle):
        self.open_handles.remove(handle)


def _windows_liveness(monkeypatch, winapi: _FakeWinapi) -> None:
    def no_kill(pid, sig):
        raise AssertionError(f"os.kill({pid}, {sig}) on Windows: a Ctrl-C to the console (signal 0 is CTRL_C_EVENT)")

    monkeypatch.setattr(lock, "os", _OsAs(name="nt", kill=no_kill))
    monkeypatch.setitem(sys.modules, "_winapi", winapi)


def test_the_liveness_probe_on_windows_never_calls_os_kill(monkeypatch):
    """F1/F3: ``os.kill(pid, 0)`` on Windows is GenerateConsoleCtrlEvent(CTRL_C_EVENT, pid): a Ctrl-C to a live run's
    console (both runs stopped), and WinError 87 for an ended one, which was taken for alive."""
    winapi = _FakeWinapi(alive={101}, ended={102}, denied={103})
    _windows_liveness(monkeypatch, winapi)
    assert lock._alive(101) is True
    assert lock._alive(102) is False   # opened (a handle still held), but its exit code is not STILL_ACTIVE
    assert lock._alive(103) is True    # another user's: alive, as a PermissionError of os.kill on POSIX
    assert lock._alive(104) is False   # no such process
    assert not winapi.open_handles     # every handle opened is closed


def test_an_ended_runs_lock_is_taken_over_on_windows(tmp_path, monkeypatch):
    """F1: a lock of an ended run (written on Windows: no proc_start, boot_id or pid_ns) is stale and taken over with
    a note; one of a live run is refused, and neither asks os.kill."""
    import json

    target = tmp_path / "w.h5"
    lp = lock.lock_path(target)
    info = {"pid": 4242, "host": socket.gethostname(), "started": "2026-12-07 08:17:00", "command": "mcproton run",
            "proc_start": None, "boot_id": None, "pid_ns": None}
    lp.write_text(json.dumps(info) + "\r\n", encoding="utf-8")
    notes: list[str] = []
    _windows_liveness(monkeypatch, _FakeWinapi(alive={4243}))
    with lock.OutputLock(target, "--out", notes.append):
        pass
    assert not lp.exists() and len(notes) == 1 and "pid 4242 no longer exists" in notes[0], notes
    lp.write_text(json.dumps({**info, "pid": 4243}) + "\r\n", encoding="utf-8")
    with pytest.raises(lock.OutputLockedError, match="being written by another run now"):
        with lock.OutputLock(target, "--out", notes.append):
            pass


def _held_by_one_run(tmp_path) -> tuple[lock.OutputLock, dict]:
    import json

    targets = [tmp_path / "w.h5", tmp_path / "w.png", tmp_path / "w.ckpt.h5"]
    ours = lock.OutputLock(targets, "--out")
    info = {"pid": 4243, "host": "other-host", "started": "2026-12-07 08:17:00", "proc_start": None, "boot_id": None}
    for p in ours.paths:
        p.write_text(json.dumps(info) + "\n", encoding="utf-8")
    return ours, info


def test_the_stale_lock_advice_names_a_windows_command_on_windows(tmp_path, monkeypatch):
    """F1: the files to delete were given as a POSIX ``rm`` with shlex quoting, which cmd.exe has not."""
    ours, info = _held_by_one_run(tmp_path)
    monkeypatch.setattr(lock, "os", _OsAs(name="nt"))
    said = ours._delete_all(ours.paths[0], info)
    assert said.startswith("delete its 3 lock files: del ") and "rm " not in said, said
    assert all(f'"{p}"' in said for p in ours.paths), said


def test_the_stale_lock_advice_on_posix_is_as_it_was(tmp_path):
    import shlex

    ours, info = _held_by_one_run(tmp_path)
    said = ours._delete_all(ours.paths[0], info)
    assert said == f"delete its 3 lock files: rm {' '.join(shlex.quote(str(p)) for p in ours.paths)}"


def test_a_run_with_signal_handlers_starts_and_stops_without_os_set_blocking(small_cfg, tmp_path, monkeypatch,
                                                                              capsys):
    """F2: Windows CPython before 3.12 has no ``os.set_blocking`` (gh-101881): ``mcproton run``, ``mcproton check``'s MC
    and ``mcproton.check()`` stopped at their start with "internal error: AttributeError".  Without it the signal
    watcher is not started and the handler alone stops the run after the batch in flight, with a checkpoint; the
    first message does not promise a stop "at once" that only the watcher gives."""
    import signal

    from mcproton._run import job
    from mcproton._run.checkpoint import checkpoint_path
    from mcproton.config import build_beams, build_geometry, load_config, run_settings

    monkeypatch.delattr(os, "set_blocking")
    monkeypatch.setattr(job, "HARD_STOP_ON_SECOND_SIGNAL", True)   # as under the command line
    sent = []

    def progress(done, rate):
        if done >= 4000 and not sent:
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    cfg = small_cfg(20_000, batch_size=2000, checkpoint_interval_s=0)
    out = tmp_path / "run.h5"
    c = load_config(cfg)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(job.RunInterrupted) as ei:
        job.run_job(c, run_settings(c), build_geometry(c), build_beams(c), out, progress=progress,
                    log=lambda m: None)
    assert sent and "checkpoint written to" in str(ei.value) and checkpoint_path(out).exists(), str(ei.value)
    assert ei.value.code == 128 + signal.SIGINT
    first = capsys.readouterr().err
    assert "SIGINT received" in first and "stop at once" not in first, first
    assert signal.getsignal(signal.SIGINT) == before


def _held_open(monkeypatch, held) -> None:
    """Windows: ``held`` is open in another program (a viewer, HDFView, a notebook's h5py.File): removing it fails
    with WinError 5, a PermissionError (errno EACCES), as in the audit's harness (EMU_HELD)."""
    from pathlib import Path

    real = Path.unlink

    def unlink(self, missing_ok=False):
        if os.path.realpath(self) == os.path.realpath(held):
            exc = PermissionError(13, "Access is denied", str(self))
            exc.winerror = 5
            raise exc
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)


def test_an_earlier_output_open_in_another_program_names_it_the_checkpoint_and_resume(small_cfg, tmp_path,
                                                                                      monkeypatch, capsys):
    """F4: the finished run could not remove the earlier HDF5 (open in HDFView on Windows) and ended as
    "[Errno 13] Access is denied" with exit status 2, saying nothing of the checkpoint that holds the run.  Now exit
    status 3 (the output's, mcproton.errors), naming the file, the checkpoint and --resume, which then writes the
    outputs without transporting once the file is let go."""
    from fakes import log_lines  # tests/fakes.py
    from run_helpers import no_transport, read_h5

    from mcproton._run.checkpoint import checkpoint_path
    from mcproton.cli import main

    cfg = small_cfg(2000)
    out = tmp_path / "w.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:
        _held_open(m, out)
        rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "run.seed=7"])
    err = " ".join(log_lines(capsys.readouterr().err))
    ckpt = checkpoint_path(out)
    assert rc == 3, err
    assert f"could not remove the earlier output {out}, to write this run's in its place: access is denied (is its " \
           "folder writable by you?)" in err, err
    assert f"the checkpoint {ckpt}" in err and "--resume" in err and "Errno" not in err, err
    assert ckpt.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]
    no_transport(monkeypatch)
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "run.seed=7", "--resume"]) == 0, \
        capsys.readouterr().err
    assert read_h5(out)["dose"].any() and not ckpt.exists()


def test_without_a_checkpoint_an_earlier_output_that_stays_is_said_and_the_run_is_rescued(small_cfg, tmp_path,
                                                                                          monkeypatch, capsys):
    """F4 with --no-checkpoint: nothing holds the finished run, so it is not stopped there: a note names the file,
    and the output's own write (which fails the same way on Windows) rescues the result as for any failed write."""
    from fakes import log_lines  # tests/fakes.py

    from mcproton.cli import main

    cfg = small_cfg(2000)
    out = tmp_path / "w.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    _held_open(monkeypatch, out)
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-checkpoint"]) == 0
    err = " ".join(log_lines(capsys.readouterr().err))
    assert f"note: could not remove the earlier output {out}: access is denied (is its folder" in err, err


def test_on_windows_a_file_that_cannot_be_removed_is_asked_about_as_open_elsewhere():
    """F4: on Windows the PermissionError of a removal is (nearly always) a file open in another program; elsewhere
    a folder without write permission."""
    from mcproton.cli import _not_removable_hint

    why, do = _not_removable_hint(windows=True)
    assert "open in another program" in why and "HDFView" in why and do == "close it there"
    why, do = _not_removable_hint(windows=False)
    assert "open in another program" not in why and do == "make its folder writable"
    assert _not_removable_hint() == _not_removable_hint(windows=os.name == "nt")


def _stdout_bytes(monkeypatch, encoding: str, text: str) -> tuple[bytes, object, str]:
    """What the command line's stdout (:func:`dropping_std_streams`) makes of ``text`` where sys.stdout encodes in
    ``encoding`` with errors "strict" (Windows: stdout redirected to a file or a pipe is in the ANSI code page)."""
    import io

    from mcproton._io.console import dropping_std_streams, lost_output_error

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    with dropping_std_streams():
        print(text)
        lost = lost_output_error(sys.stdout)
    stream.flush()
    return raw.getvalue(), lost, stream.errors


def test_a_name_outside_stdouts_code_page_is_escaped_and_stdout_goes_on(monkeypatch):
    """F5: with stdout in cp1252, the first name outside it (a patient folder "Dvořák_Jiří") raised
    UnicodeEncodeError, which silenced stdout for the rest of the process: ``check --batch`` lost its verdict lines,
    and a FAIL exited 3 ("free disk space"), not 1."""
    got, lost, errors = _stdout_bytes(monkeypatch, "cp1252", "Dvořák_Jiří: FAIL\nsummary: 1 FAIL")
    assert lost is None
    assert got == b"Dvo\\u0159\xe1k_Ji\\u0159\xed: FAIL\nsummary: 1 FAIL\n", got
    assert errors == "strict"   # put back after the command (a script calling main keeps its stream as it was)


def test_a_utf8_stdout_is_written_as_it_was(monkeypatch):
    got, lost, errors = _stdout_bytes(monkeypatch, "utf-8", "Dvořák_Jiří: FAIL")
    assert lost is None and got == "Dvořák_Jiří: FAIL\n".encode() and errors == "strict"


def test_a_cp1252_stdout_of_the_command_keeps_every_line(tmp_path):
    """F5, the command: ``mcproton info`` with its kernel cache under a user folder "Łukasz" and stdout in cp1252 (as
    redirected on Windows) printed up to "kernel_cache:", then nothing, and exited 3."""
    import subprocess

    from mcproton._backend import cpu

    cache = tmp_path / "Łukasz"
    cache.symlink_to(cpu.cache_dir(), target_is_directory=True)   # the kernel built already: nothing to build
    env = {**os.environ, "PYTHONIOENCODING": "cp1252", "MCPROTON_CACHE_DIR": str(cache), "PYTHONUTF8": "0"}
    p = subprocess.run([sys.executable, "-m", "mcproton", "info"], capture_output=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    out = p.stdout.decode("cp1252")
    assert "\\u0141ukasz" in out and "optional:" in out.split("kernel_cache:")[1], out


def test_a_stdout_that_cannot_take_a_character_is_not_called_a_full_disk(monkeypatch, capsys):
    """F5: where the escape could not be set (a stream without ``reconfigure``), the lost summary's advice is the
    encoding's (PYTHONUTF8=1), not "free disk space"."""
    from mcproton._io.console import DroppingStream
    from mcproton.cli import _summary_written

    class Cp1252Only:
        encoding, errors = "cp1252", "strict"

        def write(self, text):
            return len(text.encode("cp1252"))

        def flush(self):
            pass

    stream = DroppingStream(Cp1252Only())
    stream.write("Dvořák: FAIL\n")
    monkeypatch.setattr(sys, "stdout", stream)
    assert _summary_written(1) == 3
    err = capsys.readouterr().err
    assert "PYTHONUTF8=1" in err and "free disk space" not in err, err


_PATH_KEYS = [("phantom", "ct_dir"), ("phantom", "calibration"), ("plan", "rtplan"), ("plan", "rtstruct"),
              ("plan", "beam_model"), ("output", "rtdose")]


@pytest.mark.parametrize("sec,key", _PATH_KEYS)
def test_a_windows_path_in_a_double_quoted_toml_string_is_refused_naming_the_key(sec, key, tmp_path):
    """F6: ``"C:\\temp\\new\\rd.dcm"`` in a TOML "..." string is ``C:<tab>emp<line break>ew<CR>d.dcm``: taken without
    a word (an RT Dose was written to a file whose name held a tab, a line break and a CR).  Refused for every
    path key, naming it, with the path as typed in single quotes and with forward slashes."""
    from mcproton.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[{sec}]\n{key} = "C:\\temp\\new\\rd.dcm"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(cfg)
    msg = str(ei.value)
    assert msg.startswith(f'{sec}.{key} = "C:\\temp\\new\\rd.dcm" holds a tab, a line break and a carriage return')
    assert f"{key} = 'C:\\temp\\new\\rd.dcm'" in msg and f'{key} = "C:/temp/new/rd.dcm"' in msg, msg


def test_a_control_character_given_with_set_is_refused_too(tmp_path):
    from mcproton.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r'output\.rtdose = "a\\bx\\u0007\.dcm" holds a backspace and the control '
                                          r"character U\+0007"):
        load_config(None, ["output.rtdose=\"a\\bx\\u0007.dcm\""])


def test_windows_paths_in_single_quotes_or_with_forward_slashes_are_taken_as_written(tmp_path):
    from mcproton.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text("[output]\nrtdose = 'C:\\temp\\new\\rd.dcm'\n", encoding="utf-8")
    assert load_config(cfg)["output"]["rtdose"] == "C:\\temp\\new\\rd.dcm"
    cfg.write_text('[output]\nrtdose = "C:/temp/new/rd.dcm"\n', encoding="utf-8")
    assert load_config(cfg)["output"]["rtdose"] == "C:/temp/new/rd.dcm"
    cfg.write_text('[output]\nrtdose = "C:\\\\temp\\\\rd.dcm"\n', encoding="utf-8")   # escaped backslashes
    assert load_config(cfg)["output"]["rtdose"] == "C:\\temp\\rd.dcm"


def test_the_command_refuses_it_before_anything_is_written(small_cfg, tmp_path, capsys):
    from fakes import log_lines  # tests/fakes.py

    from mcproton.cli import main

    cfg = small_cfg(1000)
    cfg.write_text(cfg.read_text().replace("[output]\n", '[output]\nrtdose = "rd\\temp.dcm"\n'))
    assert main(["run", str(cfg), "--out", str(tmp_path / "w.h5")]) == 2
    err = log_lines(capsys.readouterr().err)
    assert len(err) == 1 and "output.rtdose" in err[0] and "rtdose = 'rd\\temp.dcm'" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


@pytest.mark.parametrize("path,error", [("C:\\Users\\phys\\RD.dcm", "Invalid hex value"),
                                        ("D:\\mcp\\out\\RD.dcm", "Unescaped")])
def test_a_toml_error_from_a_windows_path_says_what_to_write(path, error, tmp_path):
    """F6: ``"C:\\Users\\..."`` (an invalid \\U escape) gave only "not valid TOML (Invalid hex value (at line 10,
    column 15))", ``"D:\\mcp\\..."`` only "Unescaped '\\' in a string"."""
    from mcproton.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\nprimaries = 1000\n[output]\nrtdose = "{path}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(cfg)
    msg = str(ei.value)
    assert error in msg and "single quotes" in msg and "forward slashes" in msg, msg
    assert msg.endswith(f"line 4 would be: rtdose = '{path}'"), msg


def test_other_toml_errors_get_no_backslash_hint(tmp_path):
    from mcproton.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text("[run\nprimaries = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(cfg)
    assert "not valid TOML" in str(ei.value) and "backslash" not in str(ei.value)


def _no_proc_meminfo(monkeypatch, **os_names) -> None:
    """/proc/meminfo cannot be read (Windows, macOS), and ``os`` as mcproton._run.inputs sees it has ``os_names``."""
    import builtins

    from mcproton._run import inputs

    def fake_open(path, *a, **k):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return builtins.open(path, *a, **k)

    monkeypatch.setattr(inputs, "open", fake_open, raising=False)
    monkeypatch.setattr(inputs, "os", _OsAs(**os_names), raising=False)
    monkeypatch.setattr(inputs, "_on_linux", lambda: False)   # this host's cgroup and ulimit -v are Linux's


GB = 1e9
#: 800 x 800 x 800 voxels (a 400 mm cube at 0.5 mm): at least 53 GB however little of it gets dose (41 before the LETd's
#: running sums of 2026-12-08)
BIG = (512_000_000, 1, (800, 800, 800), False)


def test_without_proc_windows_memory_is_read_and_a_grid_that_cannot_fit_is_refused(monkeypatch):
    """F7: ``available_memory`` read /proc/meminfo only: on Windows and macOS there was no memory check at all, and a
    102 GB grid on a 24 GB machine passed ``--check-config`` without a word."""
    import ctypes

    from mcproton._run import inputs
    from mcproton.config import ConfigError

    class Kernel32:
        @staticmethod
        def GlobalMemoryStatusEx(ref):
            status = ref._obj
            assert status.dwLength == ctypes.sizeof(status) == 64   # MEMORYSTATUSEX as Windows lays it out
            status.ullTotalPhys, status.ullAvailPhys, status.ullAvailPageFile = (int(16 * GB), int(4 * GB),
                                                                                  int(6 * GB))
            return 1

    _no_proc_meminfo(monkeypatch, name="nt")
    monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(kernel32=Kernel32()), raising=False)
    mem = inputs.available_memory()
    assert mem is not None and mem.available == 4 * GB and mem.swap == 2 * GB and "GlobalMemoryStatusEx" in mem.limit
    with pytest.raises(ConfigError, match=r"needs at least 53\.2 GB.* only 4\.0 GB are available \(2\.0 GB of swap\), "
                                          r"bounded by the machine's free memory \(GlobalMemoryStatusEx"):
        inputs.check_memory(*BIG)


def test_without_proc_on_macos_the_physical_memory_bounds_the_check(monkeypatch):
    """F7: macOS has no SC_AVPHYS_PAGES: a grid bigger than the machine's physical memory is refused, saying so."""
    from mcproton._run import inputs
    from mcproton.config import ConfigError

    def sysconf(name):
        if name == "SC_AVPHYS_PAGES":
            raise ValueError("unrecognized configuration name")
        return {"SC_PAGE_SIZE": 16384, "SC_PHYS_PAGES": int(24 * GB / 16384)}[name]

    _no_proc_meminfo(monkeypatch, name="posix", sysconf=sysconf)
    with pytest.raises(ConfigError, match=r"only 24\.0 GB are available .*the machine's physical memory \(sysconf "
                                          r"SC_PHYS_PAGES"):
        inputs.check_memory(*BIG)


def test_where_no_memory_can_be_read_the_skipped_check_is_said(monkeypatch, tmp_path, capsys):
    """F7: where nothing can be read the check was skipped without a word; now a warning says so, once, and
    ``--check-config`` gives ``memory_available_gb`` null with ``memory_limit`` "unknown: ..."."""
    import json
    import warnings

    from mcproton._io.errors import McprotonRuntimeWarning, recording_warnings
    from mcproton._run import inputs
    from mcproton.cli import main

    def sysconf(name):
        raise ValueError("unrecognized configuration name")

    _no_proc_meminfo(monkeypatch, name="posix", sysconf=sysconf)
    assert inputs.available_memory() is None
    with recording_warnings() as said, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs.check_memory(*BIG)
        inputs.check_memory(*BIG)
    assert len(said) == 1 and said[0].startswith(inputs.MEMORY_UNKNOWN + ", so the memory check was skipped: the "
                                                 "dose grid of 800 x 800 x 800"), said
    assert "needs up to about 117.9" in said[0], said
    cfg = tmp_path / "c.toml"
    cfg.write_text('[phantom]\nsize_mm = [40.0, 40.0, 100.0]\nvoxel_mm = [4.0, 4.0, 2.0]\n[beam]\nenergy_mev = 100.0\n'
                   "position_mm = [0.0, 0.0, -10.0]\n", encoding="utf-8")
    with pytest.warns(McprotonRuntimeWarning, match="memory check was skipped"):
        assert main(["run", str(cfg), "--check-config"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["memory_available_gb"] is None and got["memory_limit"].startswith("unknown: " + inputs.MEMORY_UNKNOWN)


class _SysAs(_OsAs):
    def __getattr__(self, name):
        return getattr(sys, name)


def _no_compiler(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))


@pytest.mark.parametrize("platform,said,not_said", [
    ("darwin", ["`brew install gcc`", "CXX=g++-14", "Apple clang"], ["apt-get"]),
    ("win32", ["WSL", "CUDA backend", "MSVC's cl is not supported"], ["rm ", "libomp-dev"]),
])
def test_the_compiler_advice_is_the_platforms(platform, said, not_said, monkeypatch, tmp_path):
    """F8: with no compiler, Windows and macOS were told `apt-get install g++`, and macOS's g++ without OpenMP was
    told to set CXX to g++, the compiler that had just failed (Apple clang)."""
    from mcproton._backend import cpu

    _no_compiler(monkeypatch, tmp_path)
    monkeypatch.setattr(cpu, "sys", _SysAs(platform=platform))
    with pytest.raises(RuntimeError) as ei:
        cpu.find_compiler()
    texts = [str(ei.value), cpu._no_kernel(tmp_path / "cache"),
             cpu._no_openmp_advice("g++", "clang: error: unsupported option '-fopenmp'")]
    for text in texts:
        assert not [w for w in not_said if w in text], text
    assert all(w in texts[0] and w in texts[1] for w in said[:2]), texts
    assert said[0] in texts[2] or said[1] in texts[2], texts[2]


def test_apple_clang_on_the_path_is_named_as_such(monkeypatch):
    """F8: a g++ that is Apple clang (its --version) is advised Homebrew's GCC whatever sys.platform says."""
    from mcproton._backend import cpu

    monkeypatch.setattr(cpu, "compiler_version", lambda cxx: "Apple clang version 15.0.0 (clang-1500.3.9.4)")
    text = cpu._no_openmp_advice("g++", "clang: error: unsupported option '-fopenmp'")
    assert "`brew install gcc`" in text and "such as g++" not in text, text


def test_the_compiler_advice_on_linux_is_as_it_was(monkeypatch, tmp_path):
    from mcproton._backend import cpu

    _no_compiler(monkeypatch, tmp_path)
    monkeypatch.setattr(cpu, "sys", _SysAs(platform="linux"))
    monkeypatch.setattr(cpu, "compiler_version", lambda cxx: "Debian clang version 14.0.6")
    with pytest.raises(RuntimeError, match=r"^no C\+\+ compiler found for the CPU backend \(looked for \$CXX, g\+\+, "
                                           r"c\+\+, clang\+\+\); install one, e.g. `apt-get install g\+\+`$"):
        cpu.find_compiler()
    assert cpu._no_openmp_advice("clang++", "fatal error: 'omp.h' file not found") == (
        "; clang++ has no OpenMP, which the CPU kernel is built with: install its OpenMP runtime (libgomp for g++, "
        "e.g. `apt-get install g++`; libomp-dev for clang++), or set CXX to a compiler that has it, such as g++")
    assert "install a compiler (e.g. `apt-get install g++`), or set" in cpu._no_kernel(tmp_path / "cache")


@pytest.fixture
def no_proc_cpuinfo(monkeypatch):
    """/proc/cpuinfo cannot be read (macOS, Windows); the CPU's cached model and flags are read again."""
    from mcproton._backend import cpu

    monkeypatch.setattr(cpu, "_cpuinfo", lambda: None, raising=False)
    cpu.cpu_model.cache_clear()
    cpu.cpu_flags.cache_clear()
    yield cpu
    cpu.cpu_model.cache_clear()
    cpu.cpu_flags.cache_clear()


def _mac(monkeypatch, cpu, avx512: bool) -> tuple[str, str]:
    """The model and flags of an Intel Mac with or without AVX-512 (what its sysctl prints)."""
    import subprocess

    def run(cmd, **kw):
        assert cmd[0] == "sysctl", cmd
        if cmd[1:] == ["-n", "machdep.cpu.brand_string"]:
            out = "Intel(R) Xeon(R) W-3245 CPU @ 3.20GHz\n" if avx512 else "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz\n"
        else:
            out = ("machdep.cpu.features: FPU VME SSE SSE2 SSE4.1 SSE4.2 AVX1.0\n"
                   f"machdep.cpu.leaf7_features: AVX2 BMI1 BMI2{' AVX512F AVX512CD AVX512BW' if avx512 else ''}\n"
                   f"hw.optional.avx2_0: 1\nhw.optional.avx512f: {int(avx512)}\n")
        return subprocess.CompletedProcess(cmd, 0, out, "")

    monkeypatch.setattr(cpu, "sys", _SysAs(platform="darwin"))
    monkeypatch.setattr(cpu.subprocess, "run", run)
    cpu.cpu_model.cache_clear()
    cpu.cpu_flags.cache_clear()
    return cpu.cpu_model(), cpu.cpu_flags()


def test_without_proc_a_macs_cpu_flags_tell_avx512_apart(no_proc_cpuinfo, monkeypatch):
    """F11: without /proc the cache key's "flags" were platform.machine() ("x86_64"), so two Intel Macs with and
    without AVX-512 sharing MCPROTON_CACHE_DIR had one key, and a kernel built with -march=native on one could stop
    the other with SIGILL."""
    cpu = no_proc_cpuinfo
    model_a, flags_a = _mac(monkeypatch, cpu, avx512=True)
    model_b, flags_b = _mac(monkeypatch, cpu, avx512=False)
    assert model_a.startswith("Intel(R) Xeon(R) W-3245") and model_b.startswith("Intel(R) Core(TM) i9")
    assert "AVX512F" in flags_a and "AVX512F" not in flags_b and flags_a != flags_b
    keys = []
    for flags in (flags_a, flags_b):   # one generic model name (a VM's, say): the flags tell the CPUs apart
        with monkeypatch.context() as m:
            m.setattr(cpu, "cpu_model", lambda: "the same generic model name")
            m.setattr(cpu, "cpu_flags", lambda flags=flags: flags)
            keys.append(cpu.kernel_identity("src", "c++ 1")["key"])
    assert keys[0] != keys[1]


def test_without_proc_windows_reads_the_processor_features(no_proc_cpuinfo, monkeypatch):
    import ctypes

    cpu = no_proc_cpuinfo
    monkeypatch.setattr(cpu, "sys", _SysAs(platform="win32"))
    winreg = types.ModuleType("winreg")
    winreg.HKEY_LOCAL_MACHINE = 0x80000002

    class Key:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    winreg.OpenKey = lambda root, path: Key()
    winreg.QueryValueEx = lambda key, name: ("Intel(R) Core(TM) i7-1185G7 @ 3.00GHz ", 1)
    monkeypatch.setitem(sys.modules, "winreg", winreg)
    flags = []
    for avx512 in (True, False):
        present = {10, 17, 39, 40} | ({41} if avx512 else set())
        monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(kernel32=types.SimpleNamespace(
            IsProcessorFeaturePresent=lambda i, present=present: int(i in present))), raising=False)
        cpu.cpu_flags.cache_clear()
        flags.append(cpu.cpu_flags())
    assert cpu.cpu_model() == "Intel(R) Core(TM) i7-1185G7 @ 3.00GHz"
    assert "PF_41" in flags[0] and "PF_41" not in flags[1] and "PF_40" in flags[1]


def test_where_no_cpu_flags_can_be_read_the_host_keeps_its_kernel_apart(no_proc_cpuinfo, monkeypatch):
    cpu = no_proc_cpuinfo
    monkeypatch.setattr(cpu, "sys", _SysAs(platform="freebsd14"))
    assert f"host {socket.gethostname()}" in cpu.cpu_flags()


def test_with_proc_the_cpu_identity_is_as_it_was(monkeypatch):
    """Linux: the model and flags are /proc/cpuinfo's, as before (a cache built before stays valid)."""
    from mcproton._backend import cpu

    text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: sse avx2 fpu\n"
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: text, raising=False)
    cpu.cpu_model.cache_clear()
    cpu.cpu_flags.cache_clear()
    try:
        assert cpu.cpu_model() == "AMD EPYC 7B13" and cpu.cpu_flags() == "avx2 fpu sse"
    finally:
        cpu.cpu_model.cache_clear()
        cpu.cpu_flags.cache_clear()

"""Runner integrity under faults: killed at every step of publication, concurrent runs,
signals, scripts that exit or report non-JSON, a full disk, quick-vs-full folders, umask.

Real processes and real files throughout: the runner is killed with ``MIKB_FAULT_AT``
(``os._exit`` at a named step, as abrupt as SIGKILL) in a real ``mikb`` process or a forked
one, signals go to real ``mikb reproduce`` processes, and the full disk is a real 1 MiB tmpfs
where it can be mounted (an in-process ENOSPC otherwise, and always as well). The invariant
checked after every fault: the previous results are byte-for-byte in place, or the new ones
are complete; and the next run leaves no leftover.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

from mikb.atomic import write_text_atomic
from mikb.loader import load_knowledge_base
from mikb.reproduce.publish import (
    FAULT_ENV,
    FAULT_EXIT_CODE,
    NO_EXCHANGE_ENV,
    FolderLock,
    LockHeld,
    exchange,
    leftovers,
    publish,
    recover,
)
from mikb.reproduce.results import load_model_results
from mikb.reproduce.runner import reproduce

CIRCUIT, MODEL = "toy-copy", "toy-2l"
FAULT_SCRIPT = FIXTURES / "runner_faults" / "reproduce.py"


# -- fixtures and helpers ------------------------------------------------------------------
def _make_root(root: Path) -> Path:
    shutil.copytree(FIXTURES / "kb", root)
    for page in (REPO / "docs").glob("*.md"):
        if not (root / "docs" / page.name).exists():
            shutil.copyfile(page, root / "docs" / page.name)
    shutil.copyfile(FAULT_SCRIPT, root / "circuits_zoo" / CIRCUIT / "reproduce.py")
    return root


def _run(root: Path, monkeypatch: pytest.MonkeyPatch, mode: str = "ok", tag: str = "new", **kwargs):
    monkeypatch.setenv("MIKB_FIXTURE_MODE", mode)
    monkeypatch.setenv("MIKB_FIXTURE_TAG", tag)
    return reproduce(load_knowledge_base(root), CIRCUIT, MODEL, show_progress=False, force=True, **kwargs)


@pytest.fixture(scope="module")
def published_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fixture repository whose toy-copy results were published once, tagged "old"."""
    root = _make_root(tmp_path_factory.mktemp("template") / "kb")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        assert _run(root, mp, tag="old").status == "ok"
    return root


@pytest.fixture
def root(published_template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "kb"
    shutil.copytree(published_template, dest)
    return dest


def _outputs(root: Path) -> Path:
    return root / "circuits_zoo" / CIRCUIT / "results"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def _tag(folder: Path) -> str | None:
    """"old"/"new" for a complete results folder, None for anything else."""
    try:
        results = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if not all((folder / f["file"]).is_file() for f in results["figures"]) or not (folder / "log.txt").is_file():
        return None
    return next(n.split()[1] for n in results["notes"] if n.startswith("tag "))


def _env(mode: str = "ok", **extra: str) -> dict[str, str]:
    return {**os.environ, "MIKB_FIXTURE_MODE": mode, "MIKB_FIXTURE_TAG": "new", **extra}


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mikb.cli", "--root", str(root), "reproduce", *args],
                          capture_output=True, text=True, env=env or _env(), timeout=120)


def _state(pid: int) -> str | None:
    """The /proc state letter of a process, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")  # a zombie has ended (its reaper may be slow)


def _wait_until(predicate, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _start_hanging(root: Path) -> tuple[subprocess.Popen, int]:
    """A real `mikb reproduce` whose script sleeps; returns it and its script child's pid."""
    proc = subprocess.Popen([sys.executable, "-m", "mikb.cli", "--root", str(root), "reproduce", CIRCUIT, "--force",
                             "--no-progress"], env=_env("hang"), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_files = lambda: list(_outputs(root).glob(".staging-*/child.pid"))  # noqa: E731
    assert _wait_until(lambda: any(p.read_text() for p in pid_files())), "the script never started"
    child = int(pid_files()[0].read_text())
    assert _alive(child)
    return proc, child


# -- killed at every step of publication ---------------------------------------------------
def _write_results(folder: Path, tag: str) -> None:
    folder.mkdir(parents=True)
    (folder / "curve.plotly.json").write_text("{}\n")
    (folder / "log.txt").write_text(f"{tag}\n")
    (folder / "results.json").write_text(json.dumps(
        {"figures": [{"file": "curve.plotly.json"}], "notes": [f"tag {tag}"]}))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's; elsewhere the fallback runs")
def test_rename_exchange_swaps_two_folders_here(tmp_path: Path) -> None:
    """The atomic path is the one these tests exercise (Linux, glibc >= 2.28)."""
    a, b = tmp_path / "a", tmp_path / "b"
    _write_results(a, "old")
    _write_results(b, "new")
    assert exchange(a, b)
    assert (_tag(a), _tag(b)) == ("new", "old")


PUBLISH_FAULTS = [  # (previous results?, exchange?, step killed at, what must be in place)
    (True, True, "exchanged", {"new"}),
    (True, False, "moved-old", {None}),  # the fallback's window: a complete .old-* copy only
    (True, False, "published", {"new"}),
    (False, True, "published", {"new"}),
]


@pytest.mark.parametrize(("previous", "use_exchange", "step", "in_place"), PUBLISH_FAULTS)
def test_publish_killed_at_each_step_loses_nothing(tmp_path: Path, previous: bool, use_exchange: bool,
                                                   step: str, in_place: set) -> None:
    outputs = tmp_path / "results"
    final, staging = outputs / "m", outputs / ".staging-m-999"
    if previous:
        _write_results(final, "old")
    _write_results(staging, "new")
    pid = os.fork()
    if pid == 0:  # the "runner", killed at `step`
        os.environ[FAULT_ENV] = step
        if not use_exchange:
            os.environ[NO_EXCHANGE_ENV] = "1"
        try:
            publish(staging, final)
        finally:
            os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == FAULT_EXIT_CODE, "the fault did not fire"
    assert _tag(final) in in_place
    copies = {_tag(p) for p in [final, *leftovers(outputs, "m")]}
    assert "new" in copies and ("old" in copies if step == "moved-old" else True)
    recover(outputs, "m")  # what the next run does first
    assert _tag(final) == ("old" if step == "moved-old" else "new")
    assert leftovers(outputs, "m") == []


def test_recover_keeps_the_only_copy_and_drops_incomplete_staging(tmp_path: Path) -> None:
    outputs = tmp_path / "results"
    _write_results(outputs / ".staging-m-1", "new")  # finished, killed before its first publication
    (outputs / ".staging-m-2").mkdir()  # killed mid-run: incomplete
    (outputs / ".staging-m-small-3").mkdir()  # another model's (m-small): not ours to touch
    done = recover(outputs, "m")
    assert _tag(outputs / "m") == "new" and leftovers(outputs, "m") == []
    assert (outputs / ".staging-m-small-3").is_dir() and len(done) == 2


@pytest.mark.parametrize(("step", "extra_env"), [
    ("writing-results.json", {}), ("staged", {}), ("moved-old", {NO_EXCHANGE_ENV: "1"}),
])
def test_real_runner_killed_during_publication_then_next_run_recovers(
        root: Path, monkeypatch: pytest.MonkeyPatch, step: str, extra_env: dict[str, str]) -> None:
    final = _outputs(root) / MODEL
    before = _snapshot(final)
    proc = _cli(root, CIRCUIT, "--force", "--no-progress", env=_env(**{FAULT_ENV: step, **extra_env}))
    assert proc.returncode == FAULT_EXIT_CODE, proc.stderr
    if step == "moved-old":
        assert not final.exists() and any(_tag(p) == "old" for p in leftovers(_outputs(root), MODEL))
    else:
        assert _snapshot(final) == before
    if step == "moved-old":  # the hardest leftover gets a real next run: nothing in place
        assert _run(root, monkeypatch, tag="newer").status == "ok"
        assert _tag(final) == "newer"
    else:
        recover(_outputs(root), MODEL)
        assert _tag(final) in ("old", "new")
    assert leftovers(_outputs(root), MODEL) == []


# -- concurrency and signals ---------------------------------------------------------------
def test_second_run_is_refused_and_sigterm_ends_the_first(root: Path) -> None:
    before = _snapshot(_outputs(root) / MODEL)
    proc, child = _start_hanging(root)
    try:
        second = _cli(root, CIRCUIT, "--force", "--no-progress")
        assert second.returncode == 1
        assert f"another mikb reproduce (pid {proc.pid}) is running {CIRCUIT} on {MODEL}" in second.stderr
        os.kill(proc.pid, signal.SIGTERM)  # the runner only: it must end its child itself
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in out
    assert _wait_until(lambda: not _alive(child), 10), "the script process outlived the runner"
    assert _snapshot(_outputs(root) / MODEL) == before  # no failure.json, nothing replaced


def test_ctrl_c_to_the_process_group_is_an_interruption(root: Path) -> None:
    before = _snapshot(_outputs(root) / MODEL)
    proc, child = _start_hanging(root)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in out and "failed" not in out
    assert _wait_until(lambda: not _alive(child), 10)
    assert _snapshot(_outputs(root) / MODEL) == before
    assert list(_outputs(root).glob(".staging-*")) == []


def test_a_killed_runner_takes_its_child_with_it(root: Path) -> None:
    before = _snapshot(_outputs(root) / MODEL)
    proc, child = _start_hanging(root)
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: the kernel must end the child
    proc.wait(30)
    assert _wait_until(lambda: not _alive(child), 10), "orphaned script process"
    assert _snapshot(_outputs(root) / MODEL) == before
    assert recover(_outputs(root), MODEL) and leftovers(_outputs(root), MODEL) == []  # its staging


def test_folder_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    with FolderLock(tmp_path, "m"):
        with pytest.raises(LockHeld) as held, FolderLock(tmp_path, "m"):
            pass
        assert held.value.pid == os.getpid()
        with FolderLock(tmp_path, "m.quick"):  # another folder, another lock
            pass
    with FolderLock(tmp_path, "m"):  # released
        pass


# -- scripts that misbehave ----------------------------------------------------------------
@pytest.mark.parametrize(("mode", "message"), [
    ("exit", "exited with code 3 before reporting its results"),
    ("direct-metric", "ctx.metrics is of type object at ['handle']"),  # checked in the child before sending
    ("nan-metric", "metric 'copy_score' is nan: JSON has no NaN or Infinity"),
])
def test_misbehaving_script_is_a_precise_failure_and_keeps_old_results(
        root: Path, monkeypatch: pytest.MonkeyPatch, mode: str, message: str) -> None:
    final = _outputs(root) / MODEL
    before = _snapshot(final)
    outcome = _run(root, monkeypatch, mode)
    assert outcome.status == "failed" and message in outcome.message, outcome.message
    assert "timed out" not in outcome.message
    after = _snapshot(final)
    assert json.loads(after.pop("failure.json"))["error"] == outcome.message
    assert after == before
    json.loads((final / "failure.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in failure.json"))


@pytest.mark.parametrize(("value", "message"), [
    ({0.5, 0.6}, "metric 'm' is of type set"),
    (float("inf"), "metric 'm' is inf: JSON has no NaN or Infinity"),
    ([0.1, float("nan")], "metric 'm' is nan at [1]"),
    ({"a": {"b": object()}}, "metric 'm' is of type object at ['a']['b']"),
])
def test_metric_refuses_what_is_not_strict_json_and_names_it(tmp_path: Path, value: object, message: str) -> None:
    """The same check as the runs above, without a child process, for each kind of value."""
    from mikb.reproduce.context import ReproContext

    ctx = ReproContext(circuit_id="c", model_id="m", seed=0, quick=False, params={}, out_dir=tmp_path)
    with pytest.raises(ValueError) as raised:
        ctx.metric("m", value)
    assert message in str(raised.value) and ctx.metrics == {}


def test_full_disk_while_writing_results_json_simulated(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC injected in-process at the one write (results.json into staging)."""
    real_write = Path.write_text

    def full_disk(self: Path, *args, **kwargs):
        if self.name == "results.json" and self.parent.name.startswith(".staging-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    before = _snapshot(_outputs(root) / MODEL)
    outcome = _run(root, monkeypatch)
    assert outcome.status == "failed"
    assert "no space left on the device while writing results.json" in outcome.message
    assert "previous results are untouched" in outcome.message
    after = _snapshot(_outputs(root) / MODEL)
    assert "no space left" in json.loads(after.pop("failure.json"))["error"] and after == before
    assert list(_outputs(root).glob(".staging-*")) == []


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_full_disk_on_a_real_small_filesystem(published_template: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A real 1 MiB tmpfs, filled up to leave room for the figure but not for a 400 kB results.json."""
    mount = tmp_path / "disk"
    if not _mount_tmpfs(mount, "1m"):
        pytest.skip("cannot mount a tmpfs here (not root?); the in-process ENOSPC test covers the code path")
    try:
        root = mount / "kb"
        shutil.copytree(published_template, root)
        before = _snapshot(_outputs(root) / MODEL)
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * (free - 128 * 1024))
        outcome = _run(root, monkeypatch, "big-note")
        assert outcome.status == "failed" and "no space left on the device" in outcome.message, outcome.message
        after = _snapshot(_outputs(root) / MODEL)
        after.pop("failure.json", None)  # written if the freed staging left room for it
        assert after == before and _tag(_outputs(root) / MODEL) == "old"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# -- modes, requests, records --------------------------------------------------------------
def test_quick_runs_have_their_own_folder_and_the_page_reads_full(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = _outputs(root) / MODEL
    before = _snapshot(full)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a user who wants downloads: the child keeps it
    outcome = _run(root, monkeypatch, tag="quick", quick=True)
    assert outcome.status == "ok" and outcome.folder == _outputs(root) / f"{MODEL}.quick"
    assert _snapshot(full) == before and _tag(outcome.folder) == "quick"
    quick = json.loads((outcome.folder / "results.json").read_text())
    assert quick["quick"] is True and "HF_HUB_OFFLINE=0" in quick["notes"]
    circuit = load_knowledge_base(root).circuits[CIRCUIT]
    shown = load_model_results(circuit, MODEL)
    assert shown.folder == full and shown.results["quick"] is False and shown.state == "ok"
    dry = _cli(root, CIRCUIT, "--dry-run", "--quick")
    assert f"{CIRCUIT} on {MODEL} [quick]: cached — quick results current" in dry.stdout, dry.stdout + dry.stderr
    dry_full = _cli(root, CIRCUIT, "--dry-run")
    assert f"{CIRCUIT} on {MODEL} [full]: cached — full results current" in dry_full.stdout


def test_quick_results_and_locks_are_git_ignored() -> None:
    paths = ["circuits_zoo/ioi/results/planted-ioi.quick/results.json", "circuits_zoo/ioi/results/.planted-ioi.lock",
             "circuits_zoo/ioi/results/.staging-planted-ioi-12/results.json"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == paths
    full = subprocess.run(["git", "check-ignore", "circuits_zoo/ioi/results/planted-ioi/results.json"], cwd=REPO)
    assert full.returncode == 1  # full results are committed


def test_all_with_a_circuit_id_is_rejected(root: Path) -> None:
    before = _snapshot(_outputs(root) / MODEL)
    proc = _cli(root, CIRCUIT, "--all")
    assert proc.returncode == 2 and "give a circuit id or --all, not both" in proc.stderr
    assert _snapshot(_outputs(root) / MODEL) == before


def test_unchanged_not_run_record_is_left_alone_and_names_the_command(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run(root, monkeypatch, "unavailable")
    assert first.status == "unavailable"
    assert "`mikb reproduce toy-copy --model toy-2l`" in first.message and "<circuit>" not in first.message
    record = _outputs(root) / MODEL / "failure.json"
    written = (record.read_bytes(), record.stat().st_mtime_ns)
    time.sleep(0.01)
    second = _run(root, monkeypatch, "unavailable")
    assert second.status == "unavailable" and "left as it was" in second.message
    assert (record.read_bytes(), record.stat().st_mtime_ns) == written


def test_child_runs_offline_by_default(root: Path) -> None:
    """The template's run had no HF_HUB_OFFLINE: the child set it before importing the script
    (the quick-run test checks that a user's explicit value wins)."""
    notes = json.loads((_outputs(root) / MODEL / "results.json").read_text())["notes"]
    assert "HF_HUB_OFFLINE=1" in notes


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "f.json", "{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == mode

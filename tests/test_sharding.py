"""Sharing work without a coordinator: ``--shard K/N`` splits the inputs between machines, and runs that share
an output folder claim each input (``.NAME.dsocr.lock``) so that between them they convert each one exactly once.

Unit level on the split and the claims; through the CLI with the tiny ``eos`` checkpoint; and concurrent runs
as two threads calling ``dsocr_cli.convert.run`` with slow fake backends, and as two real processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from dsocr_cli.convert import ConvertJob, RunSummary, run
from dsocr_cli.engine.backend import ConvertOptions, PageOutcome, PageRequest
from dsocr_cli.errors import OutputError, UsageError
from dsocr_cli.inputs.discover import InputSource, discover
from dsocr_cli.inputs.shard import Shard, check_shardable, parse_shard, shard_key, shard_of
from dsocr_cli.models.family import GuardDefaults
from dsocr_cli.models.registry import V1
from dsocr_cli.outputs import Manifest, OutputPlan, OutputTarget, input_identity, made_meanwhile, manifest_state
from dsocr_cli.progress import Reporter
from dsocr_cli.results import PageResult
from dsocr_cli.writers.atomic import (
    HOST,
    HOST_TAG,
    LOCK_NAME,
    ClaimHolder,
    Claims,
    directory_lock,
    read_claim,
    remove_stale_temps,
)
from tests.cli_support import DSOCR, FAST, Run, isolated_env, listing, make_image, make_pdf

DEAD_PID = 4194303
"""Above Linux's pid limit: no such process."""

NAMES = [
    "a/p0.png", "a/p1.png", "a/b/p2.png", "a/b/p3.png", "c/p4.png", "c/d/e/p5.png", "p6.png", "p7.png",
    "x.pdf", "x.png",
]
"""Ten inputs in nested folders, as found below a directory argument (``x.pdf`` and ``x.png`` share a stem)."""


def make_tree(root: Path, names: Iterable[str] = NAMES) -> list[str]:
    """Small one-page inputs at ``names`` below ``root``: images, and one-page PDFs for ``.pdf`` names."""
    for seed, name in enumerate(names):
        if name.endswith(".pdf"):
            make_pdf(root / name, pages=1)
        else:
            make_image(root / name, seed=seed, size=(64, 80))
    return list(names)


def source(relative: str | None, name: str) -> InputSource:
    return InputSource(name=name, stem=Path(name).stem, path=Path(name), relative=relative)


# ---------------------------------------------------------------- the split


def test_three_shards_cover_every_input_exactly_once_whatever_the_mount_point() -> None:
    here = [source(name, f"/mnt/nas/scans/{name}") for name in NAMES]
    there = [source(name, f"/data/scans/{name}") for name in NAMES]
    shards = [Shard(k, 3) for k in (1, 2, 3)]

    parts = [shard.select(here) for shard in shards]

    assert sorted(s.name for part in parts for s in part) == sorted(s.name for s in here)  # all, none twice
    assert all(part == [s for s in here if s in part] for part in parts)  # input order kept
    assert [[s.relative for s in shard.select(there)] for shard in shards] == [
        [s.relative for s in part] for part in parts
    ]
    # The split is part of the interface (machines on different dsocr versions must agree): pinned.
    assert [[s.relative for s in part] for part in parts] == [
        ["c/d/e/p5.png", "p6.png"],
        ["a/p1.png", "a/b/p2.png", "x.png"],
        ["a/p0.png", "a/b/p3.png", "c/p4.png", "p7.png", "x.pdf"],
    ]


def test_a_named_file_is_split_by_its_base_name_and_select_runs_parallel_to_sources() -> None:
    named = [source(None, "/mnt/a/scan.png"), source(None, "scan.png"), source(None, "dir/p6.png/")]
    assert [shard_key(s) for s in named] == ["scan.png", "scan.png", "p6.png"]
    assert shard_of("scan.png", 3) == 2 and shard_of("report.pdf", 2) == 1 and shard_of("2024/a.pdf", 5) == 1
    assert shard_key(source(None, "\u00e9.png")) == shard_key(source(None, "e\u0301.png"))  # NFC: as macOS, as Linux
    plans = ["plan-a", "plan-b", "plan-c"]
    assert [Shard(k, 3).select(plans, named) for k in (1, 2, 3)] == [["plan-c"], ["plan-a", "plan-b"], []]
    assert Shard(1, 1).select(named) == named


@pytest.mark.parametrize(("text", "expected"), [("2/3", Shard(2, 3)), ("1/1", Shard(1, 1)), (" 3 / 3 ", Shard(3, 3))])
def test_shard_values(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected
    assert str(expected) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["0/3", "4/3", "x", "3", "1/0", "-1/3", "", "1/2/3", "1.5/3"])
def test_bad_shard_values_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match=rf"^--shard {re.escape(repr(text))}: expected K/N with 1 <= K <= N, e\.g\. 2/3$"):
        parse_shard(text)


def test_stdin_cannot_be_sharded() -> None:
    with pytest.raises(UsageError, match=r"stdin \(-\) is one machine's own input"):
        check_shardable(["scans", "-"], Shard(1, 2))
    check_shardable(["-"], None)
    check_shardable(["scans"], Shard(1, 2))


# ---------------------------------------------------------------- the split through the CLI


@pytest.mark.parametrize("value", ["0/3", "4/3", "x"])
def test_a_bad_shard_is_one_line_and_exit_1_before_any_model_loads(dsocr, monkeypatch, value: str) -> None:
    make_image("scan.png")

    flag = dsocr("convert", "scan.png", "-o", "out", "--shard", value, "--model", "never-loaded", *FAST)
    monkeypatch.setenv("DSOCR_SHARD", value)
    env = dsocr("convert", "scan.png", "-o", "out", "--model", "never-loaded", *FAST)

    expected = f"error: --shard {value!r}: expected K/N with 1 <= K <= N, e.g. 2/3\n"
    assert (flag.code, flag.stdout, flag.stderr) == (1, "", expected)
    assert (env.code, env.stdout, env.stderr) == (1, "", expected)
    assert not Path("out").exists()


def test_stdin_with_shard_is_a_usage_error(dsocr) -> None:
    run_ = dsocr("convert", "-", "--shard", "1/2", "--model", "never-loaded", *FAST)

    assert run_.code == 1 and len(run_.stderr.splitlines()) == 1
    assert run_.stderr.startswith("error: --shard splits files and directories between machines; stdin (-)")


def test_three_shards_from_flag_environment_and_config_file_convert_everything_once(
    dsocr, eos_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_tree(Path("tree"))
    eos = ("--model", str(eos_checkpoint), *FAST)
    config = tmp_path / "dsocr.toml"
    config.write_text('shard = "1/3"\n')

    monkeypatch.setenv("DSOCR_CONFIG", str(config))
    first = dsocr("convert", "tree", "-o", "out", "-v", *eos)
    monkeypatch.delenv("DSOCR_CONFIG")
    monkeypatch.setenv("DSOCR_SHARD", "2/3")
    second = dsocr("convert", "tree", "-o", "out", "-v", *eos)
    monkeypatch.delenv("DSOCR_SHARD")
    third = dsocr("convert", "tree", "-o", "out", "-v", "--shard", "3/3", *eos)

    assert (first.code, second.code, third.code) == (0, 0, 0), (first.stderr, second.stderr, third.stderr)
    assert "shard 1/3: 2 of 10 input(s)" in first.messages
    assert "shard 2/3: 3 of 10 input(s)" in second.messages
    assert "shard 3/3: 5 of 10 input(s)" in third.messages
    assert [r.messages[-1] for r in (first, second, third)] == [
        f"dsocr: {n} of {n} document(s) converted, {n} page(s), T s" for n in (2, 3, 5)
    ]
    # Named as one unsharded run names them: x.pdf and x.png were in different shards, yet told apart.
    expected = sorted(
        name.replace(".png", ".md") if not name.startswith("x.") else name + ".md" for name in NAMES
    )
    assert listing(Path("out")) == [LOCK_NAME, *expected]
    everything = dsocr("convert", "tree", "-o", "out", "-v", *eos)
    assert everything.messages[-1] == "dsocr: 0 of 10 document(s) converted, 0 page(s), 10 skipped (already done), T s"


# ---------------------------------------------------------------- claims


def write_claim(path: Path, host: str, pid: int, age: float = 0.0, token: str = "someone-else") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "time": time.time() - age, "token": token}))
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_a_claim_is_held_by_one_run_until_released(tmp_path: Path) -> None:
    claim = tmp_path / ".scan.md.dsocr.lock"
    with Claims() as first, Claims() as second:
        assert first.take(claim) is None
        holder = second.take(claim)
        assert isinstance(holder, ClaimHolder)
        assert (holder.host, holder.pid, holder.token) == (HOST, os.getpid(), first.token)
        assert f"pid {os.getpid()} on {HOST}, since " in str(holder)
        first.release(claim)
        assert not claim.exists()
        assert second.take(claim) is None
    assert not claim.exists()  # closing releases what is held


@pytest.mark.parametrize(
    ("host", "pid", "age", "stale"),
    [
        (HOST, DEAD_PID, 0, True),  # dead on this host
        (HOST, "parent", 0, False),  # alive on this host
        (HOST, "parent", 400, True),  # alive, but not refreshed for longer than the timeout (pid reused)
        ("elsewhere.example", DEAD_PID, 0, False),  # another host's pid means nothing here: trusted while fresh
        ("elsewhere.example", DEAD_PID, 400, True),
    ],
)
def test_stale_claims_are_taken_over_live_ones_are_not(tmp_path: Path, host: str, pid, age: float, stale: bool) -> None:
    claim = write_claim(tmp_path / ".scan.md.dsocr.lock", host, os.getppid() if pid == "parent" else pid, age)
    with Claims() as claims:
        holder = claims.take(claim)
        assert (holder is None) is stale
        found = read_claim(claim)
        assert found is not None and (found[0].token == claims.token) is stale
    assert claim.exists() is not stale


def test_a_claim_being_written_is_trusted_while_fresh(tmp_path: Path) -> None:
    claim = tmp_path / ".scan.md.dsocr.lock"
    claim.write_text("")
    with Claims() as claims:
        assert str(claims.take(claim)) == "a run that is starting"
        old = time.time() - 1000
        os.utime(claim, (old, old))
        assert claims.take(claim) is None


def test_of_many_runs_taking_over_one_stale_claim_exactly_one_wins(tmp_path: Path) -> None:
    claim = write_claim(tmp_path / ".scan.md.dsocr.lock", HOST, DEAD_PID)
    runs = [Claims() for _ in range(8)]
    start = threading.Barrier(len(runs))
    won: list[Claims] = []

    def contend(claims: Claims) -> None:
        start.wait()
        if claims.take(claim) is None:
            won.append(claims)

    threads = [threading.Thread(target=contend, args=(claims,)) for claims in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(won) == 1
    assert read_claim(claim)[0].token == won[0].token
    assert not (tmp_path / ".scan.md.dsocr.lock.takeover").exists()
    for claims in runs:
        claims.close()
    assert not claim.exists()


def test_a_held_claim_is_refreshed_so_it_never_goes_stale(tmp_path: Path) -> None:
    claim = tmp_path / ".scan.md.dsocr.lock"
    with Claims(stale_after=0.5) as holder, Claims(stale_after=0.5) as other:
        assert holder.take(claim) is None
        time.sleep(1.2)  # over twice the timeout: only the heartbeat keeps it fresh
        assert other.take(claim) is not None
    with Claims(stale_after=0.5) as gone:
        assert gone.take(claim) is None


def test_runs_share_the_folder_lock_but_not_with_a_run_that_wants_it_alone(tmp_path: Path) -> None:
    with directory_lock(tmp_path, shared=True), directory_lock(tmp_path, shared=True):
        with pytest.raises(OutputError, match=f"another dsocr run is writing to {tmp_path}$"):
            with directory_lock(tmp_path):
                pass
    with directory_lock(tmp_path):
        with pytest.raises(OutputError, match="does not share it"):
            with directory_lock(tmp_path, shared=True):
                pass


def test_temporary_files_of_another_host_are_left_alone_unless_long_abandoned(tmp_path: Path) -> None:
    mine_dead = tmp_path / f".a.md.{DEAD_PID}@{HOST_TAG}.0badc0de.tmp"
    foreign = tmp_path / f".b.md.{DEAD_PID}@0123abcd.0badc0de.tmp"  # being written on another machine
    abandoned = tmp_path / f".c.md.{DEAD_PID}@0123abcd.0badc0de.tmp"
    for path in (mine_dead, foreign, abandoned):
        path.write_text("x")
    old = time.time() - 2 * 24 * 3600
    os.utime(abandoned, (old, old))

    assert sorted(remove_stale_temps(tmp_path)) == sorted([mine_dead, abandoned])
    assert foreign.exists()


def test_an_output_another_run_finished_meanwhile_is_its_work_even_with_looped_pages(tmp_path: Path) -> None:
    make_image(tmp_path / "scan.png")
    scan = discover([str(tmp_path / "scan.png")])[0]
    plan = OutputPlan(tmp_path / "out" / "scan.md", ".md")
    settings = {"model": "m", "mode": "tiny"}
    before = manifest_state(plan)

    def finish(files: list[str], complete: bool, settings: dict = settings) -> None:
        plan.main.parent.mkdir(exist_ok=True)
        plan.main.write_text("text")
        manifest = Manifest(settings=settings, input=input_identity(scan), files=files, complete=complete)
        plan.manifest.write_text(manifest.to_json())

    assert made_meanwhile(plan, scan, settings, before) is None
    finish([], complete=False)  # the "incomplete" note of a run still converting it (or that failed)
    assert made_meanwhile(plan, scan, settings, before) is None
    finish(["scan.md"], complete=False)  # finished, with a looped page
    assert "converted by another run meanwhile, with looped" in made_meanwhile(plan, scan, settings, before)
    assert made_meanwhile(plan, scan, settings, manifest_state(plan)) is None  # it was there when this run began
    finish(["scan.md"], complete=True, settings={"model": "m", "mode": "base"})
    assert made_meanwhile(plan, scan, settings, before) is None  # other settings: not this run's work
    finish(["scan.md"], complete=True)
    assert made_meanwhile(plan, scan, settings, before) == "converted by another run meanwhile"


# ---------------------------------------------------------------- claims through the CLI


@pytest.mark.parametrize(
    ("host", "pid", "age"),
    [(HOST, DEAD_PID, 0), ("elsewhere.example", 1, 1000)],
    ids=["dead-pid", "not-refreshed"],
)
def test_a_stale_claim_is_taken_over_and_the_input_converted(dsocr, eos_checkpoint: Path, host, pid, age) -> None:
    make_image("scan.png")
    claim = write_claim(Path("out/.scan.md.dsocr.lock"), host, pid, age)

    run_ = dsocr("convert", "scan.png", "-o", "out", "-v", "--model", eos_checkpoint, *FAST)

    assert run_.code == 0, run_.stderr
    assert run_.messages[-1] == "dsocr: 1 of 1 document(s) converted, 1 page(s), T s"
    assert not claim.exists()
    assert listing(Path("out")) == [LOCK_NAME, "scan.md"]
    assert Manifest.read(Path("out/.scan.md.dsocr.json")).complete


@pytest.mark.parametrize(("host", "pid"), [(HOST, "parent"), ("elsewhere.example", DEAD_PID)], ids=["here", "there"])
def test_an_input_a_live_run_claimed_is_left_to_it_with_exit_0_and_no_model(dsocr, host, pid) -> None:
    make_image("scan.png")
    make_image("mine.png", seed=1)
    Path("out").mkdir()
    Path("out/mine.md").write_text("my own notes")  # skipped: not made by dsocr
    claim = write_claim(Path("out/.scan.md.dsocr.lock"), host, os.getppid() if pid == "parent" else pid)
    before = claim.read_bytes()

    run_ = dsocr("convert", "scan.png", "mine.png", "-o", "out", "-v", "--model", "never-loaded", *FAST)

    assert run_.code == 0, run_.stderr  # the model was never needed
    holder_pid = os.getppid() if pid == "parent" else pid
    assert any(
        line.startswith(f"scan.png: claimed by another run (pid {holder_pid} on {host}, since ") and line.endswith(
            "); left to it"
        )
        for line in run_.messages
    ), run_.messages
    assert run_.messages[-1] == (
        "dsocr: 0 of 2 document(s) converted, 0 page(s), 1 skipped (already done), 1 claimed by another run, T s"
    )
    assert claim.read_bytes() == before and not Path("out/scan.md").exists()

    claim.unlink()  # that run failed: it released the claim, and nothing was written
    again = dsocr("convert", "scan.png", "-o", "out", "-q", "--model", "never-loaded", *FAST)
    assert again.code == 4  # now this run takes it, and needs the model


# ---------------------------------------------------------------- concurrent runs


class SlowBackend:
    """A fake model that takes ``delay`` seconds a page and records which run converted what."""

    def __init__(self, name: str, log: list[tuple[str, str]], delay: float, on_page: Callable[[str], None] | None = None):
        self.name = name
        self.log = log
        self.delay = delay
        self.on_page = on_page
        self.provenance: dict = {}

    def guard_defaults(self, kind: str) -> GuardDefaults:
        return V1.guard_defaults[kind]

    def convert_many(self, requests: Iterable[PageRequest]) -> Iterator[PageOutcome]:
        for request in requests:
            try:
                page = request.load()
            except Exception as exc:  # as every backend: a failing load is that page's outcome
                yield PageOutcome(request, error=exc)
                continue
            time.sleep(self.delay)
            self.log.append((self.name, request.source))
            if self.on_page is not None:
                self.on_page(request.source)
            result = PageResult(
                page=page, text="word", mode=request.options.mode, prompt="", vision_tokens=1,
                generated_tokens=1, finished=True, seconds=self.delay,
            )
            yield PageOutcome(request, result=result)


def job_for(inputs: list[str], out: Path, skip_existing: bool = True) -> ConvertJob:
    return ConvertJob(
        sources=discover(inputs), options=ConvertOptions(mode="tiny"), output=OutputTarget(directory=out),
        skip_existing=skip_existing,
    )


def test_two_concurrent_runs_on_one_folder_convert_each_input_exactly_once(tmp_path: Path) -> None:
    names = make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    log: list[tuple[str, str]] = []
    summaries: dict[str, RunSummary] = {}
    start = threading.Barrier(2)

    def convert(name: str) -> None:
        backend = SlowBackend(name, log, delay=0.15)
        job = job_for([str(tmp_path / "tree")], out)
        start.wait()
        summaries[name] = run(job, lambda: backend, Reporter(quiet=True))

    threads = [threading.Thread(target=convert, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    by_run = {name: {Path(source).relative_to(tmp_path / "tree").as_posix() for who, source in log if who == name}
              for name in ("A", "B")}
    assert by_run["A"] | by_run["B"] == set(names)
    assert not by_run["A"] & by_run["B"]
    assert len(log) == len(names)  # nothing converted twice
    assert by_run["A"] and by_run["B"], by_run  # they did share the work
    for name, summary in summaries.items():
        assert summary.converted == len(by_run[name]) and not summary.failed_inputs
        assert summary.converted + summary.skipped + len(summary.claimed_inputs) == len(names)
        assert summary.exit_code() == 0
    manifests = [Manifest.read(path) for path in out.rglob("*.dsocr.json")]
    assert len(manifests) == len(names) and all(manifest.complete for manifest in manifests)
    assert [path.name for path in out.rglob("*.lock")] == [LOCK_NAME]  # every claim released

    after = run(job_for([str(tmp_path / "tree")], out), lambda: SlowBackend("C", log, 0), Reporter(quiet=True))
    assert (after.converted, after.skipped) == (0, len(names))


def test_an_input_claimed_at_first_is_tried_again_at_the_end_and_converted_if_its_run_failed(tmp_path: Path) -> None:
    make_tree(tmp_path / "in", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    claim = write_claim(out / ".b.md.dsocr.lock", HOST, os.getppid())  # a live run holds b
    log: list[tuple[str, str]] = []

    def other_run_fails(source: str) -> None:
        if source.endswith("c.png"):  # after b was found claimed
            claim.unlink()  # that run gave b up without an output

    backend = SlowBackend("A", log, 0, on_page=other_run_fails)
    summary = run(job_for([str(tmp_path / "in")], out), lambda: backend, Reporter(quiet=True))

    assert [Path(source).name for _, source in log] == ["a.png", "c.png", "b.png"]
    assert (summary.converted, summary.claimed_inputs) == (3, [])


def test_an_input_another_run_finished_meanwhile_is_not_redone_even_with_force(tmp_path: Path) -> None:
    make_tree(tmp_path / "in", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    claim = write_claim(out / ".b.md.dsocr.lock", HOST, os.getppid())
    log: list[tuple[str, str]] = []

    def other_run_finishes(source: str) -> None:
        if source.endswith("c.png"):  # after b was found claimed
            claim.unlink()
            other = run(job_for([str(tmp_path / "in/b.png")], out), lambda: SlowBackend("B", log, 0), Reporter(quiet=True))
            assert other.converted == 1

    backend = SlowBackend("A", log, 0, on_page=other_run_finishes)
    summary = run(job_for([str(tmp_path / "in")], out, skip_existing=False), lambda: backend, Reporter(quiet=True))

    assert [(who, Path(source).name) for who, source in log] == [("A", "a.png"), ("A", "c.png"), ("B", "b.png")]
    assert (summary.converted, summary.skipped, summary.exit_code()) == (2, 1, 0)


def test_two_dsocr_processes_on_one_folder_convert_each_input_once(tmp_path: Path, eos_checkpoint: Path) -> None:
    names = make_tree(tmp_path / "tree")
    command = [
        str(DSOCR), "convert", "tree", "-o", "out", "-v", "--batch-size", "1", "--model", str(eos_checkpoint), *FAST,
    ]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    runs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        runs.append(Run(process.returncode, stdout.decode(), stderr.decode()))

    assert [r.code for r in runs] == [0, 0], [r.stderr for r in runs]
    converted = [
        {line.split(": ")[0].removeprefix("tree/") for line in r.messages if line.endswith(": 1 page(s)")} for r in runs
    ]
    assert converted[0] | converted[1] == set(names) and not converted[0] & converted[1], converted
    for r, mine in zip(runs, converted, strict=True):
        assert r.messages[-1].startswith(f"dsocr: {len(mine)} of 10 document(s) converted, {len(mine)} page(s)")
    assert len(listing(tmp_path / "out")) == 1 + len(names)  # the folder lock and the outputs: no claim left
    assert all(Manifest.read(path).complete for path in (tmp_path / "out").rglob("*.dsocr.json"))

"""`asyncprov batch --ray` and `RayBatch` on a real local Ray cluster (2 CPUs, started
once for the module) against a local server that counts the requests of each
custom_id: each custom_id once in OUT through a killed worker and a killed driver, and
limits shared through a real Redis."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from asyncprov import ConfigurationError, InvalidRequestError, RateLimitError
from asyncprov.cli import main
from asyncprov.ray import BatchWorkerError, RayBatch, arun_batch, run_batch
from asyncprov.testing import OpenAITestServer, Reply

from .redis_server import RedisServer, most_in_one_second

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs for this module; other processes (a driver run as
    a command) join it at the address given."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer()
    with server.run_in_thread():
        yield server


def write_input(path: Path, count: int) -> Path:
    """IN with ``count`` requests; each request's message is its own custom_id."""
    with path.open("w") as handle:
        for i in range(count):
            body = {"model": "m", "messages": [{"role": "user", "content": f"req-{i}"}]}
            request = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
            handle.write(json.dumps(request | {"body": body}) + "\n")
    return path


def out_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines()]


def sent(server: OpenAITestServer) -> collections.Counter[str]:
    """How many times the server was sent each custom_id."""
    return collections.Counter(r.json["messages"][-1]["content"] for r in server.requests)


def cli(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["batch", *map(str, argv)], out=out)
    return code, out.getvalue()


def batch_workers() -> list[int]:
    """The pids of this cluster's batch workers (children of the raylet this test
    process started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            raylet = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            owner = int(Path(f"/proc/{raylet}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith(b"ray::BatchWorker") and owner == os.getpid():
            pids.append(int(entry.name))
    return pids


def wait_for_lines(path: Path, count: int, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {count} lines")


def test_5000_requests_over_2_workers(
    ray_address: str, server: OpenAITestServer, tmp_path: Path
) -> None:
    """5,000 requests over 2 workers: OUT holds each custom_id once with its own reply,
    the server saw each once, and the summary's counts are OUT's."""
    server.add_reply(*[Reply(status=400, error="refused") for _ in range(3)])
    source = write_input(tmp_path / "in.jsonl", 5000)
    target = tmp_path / "out.jsonl"
    code, summary = cli(
        source, target, "--ray", ray_address, "--base-url", server.base_url,
        "--workers", "2", "--concurrency", "32", "--max-retries", "0", "--progress", "none",
    )  # fmt: skip
    assert code == 1  # three requests failed
    lines = out_lines(target)
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == 5000 and set(ids) == {f"req-{i}" for i in range(5000)}
    failed = [line for line in lines if line["error"] is not None]
    assert [line["error"]["code"] for line in failed] == ["invalid_request_error"] * 3
    assert all(line["response"]["status_code"] == 400 for line in failed)
    for line in lines:
        if line["error"] is None:
            reply = line["response"]["body"]["choices"][0]["message"]["content"]
            assert reply == f"You said: {line['custom_id']}"
    assert set(sent(server).values()) == {1} and len(sent(server)) == 5000
    assert "batch: 4,997 done, 3 failed, 0 already in OUT" in summary
    assert "providers: OpenAICompatible 4,997 done, 3 failed" in summary
    assert "ray: 2 worker(s), 0 died and were replaced, 0 request(s) sent again" in summary


def test_a_killed_worker_is_replaced_and_its_requests_sent_again(
    ray_address: str, server: OpenAITestServer, tmp_path: Path
) -> None:
    """A worker's process killed mid-run: the job completes, OUT holds each custom_id
    once, and every request the server saw twice is among those reported sent again."""
    server.default = Reply(delay=0.01)
    source = write_input(tmp_path / "in.jsonl", 2000)
    target = tmp_path / "out.jsonl"
    outcome: list[tuple[int, str]] = []
    argv = ["--ray", ray_address, "--base-url", server.base_url, "--concurrency", "32"]
    run = threading.Thread(
        target=lambda: outcome.append(cli(source, target, *argv, "--progress", "none"))
    )
    earlier = set(batch_workers())  # an earlier test's workers may be on their way out
    run.start()
    try:
        wait_for_lines(target, 300)
        workers = sorted(set(batch_workers()) - earlier)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
    finally:
        run.join(120)
    code, summary = outcome[0]
    assert code == 0, summary
    ids = [line["custom_id"] for line in out_lines(target)]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(2000))
    assert all(line["error"] is None for line in out_lines(target))
    resent = int(summary.split("died and were replaced, ")[1].split(" request(s)")[0])
    assert "ray: 2 worker(s), 1 died and were replaced" in summary
    twice = [custom_id for custom_id, times in sent(server).items() if times > 1]
    assert 0 < resent <= 2 * 32  # what the lost worker had in flight, at most
    assert len(twice) <= resent
    assert max(sent(server).values()) <= 2


def test_a_killed_driver_resumes(
    ray_address: str, server: OpenAITestServer, tmp_path: Path
) -> None:
    """The driver (`asyncprov batch --ray ADDRESS`, a process of its own) killed with
    SIGKILL mid-run, then run again: OUT ends with each custom_id once."""
    server.default = Reply(delay=0.01)
    source = write_input(tmp_path / "in.jsonl", 2000)
    target = tmp_path / "out.jsonl"
    command = [
        sys.executable, "-m", "asyncprov", "batch", str(source), str(target),
        "--ray", ray_address, "--base-url", server.base_url, "--concurrency", "32",
        "--progress", "none",
    ]  # fmt: skip
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_lines(target, 300)
    finally:
        driver.kill()
        driver.communicate(timeout=30)
    before = len(out_lines(target))
    assert before < 2000
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    ids = [line["custom_id"] for line in out_lines(target)]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(2000))
    assert f"{before:,} already in OUT" in rerun.stdout
    assert rerun.stderr == ""


def test_two_workers_share_one_rate_through_redis(
    ray_address: str, server: OpenAITestServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    """2 workers under one shared 50 requests/s (--rpm 3000 --redis URL): no one-second
    window at the server sees more than the limit plus the budget's burst (one
    second's worth, as in memory), none after the first second more than 50 (+5 for
    jitter), and the 250 requests take at least the 4 s the budget allows."""
    redis_url = own_redis.url
    source = write_input(tmp_path / "in.jsonl", 250)
    target = tmp_path / "out.jsonl"
    code, summary = cli(
        source, target, "--ray", ray_address, "--base-url", server.base_url,
        "--rpm", "3000", "--redis", redis_url, "--progress", "none",
    )  # fmt: skip
    assert code == 0, summary
    times = sorted(r.at for r in server.requests)
    assert len(times) == 250
    assert most_in_one_second(times) <= 50 + 50 + 5
    steady = [t for t in times if t >= times[0] + 1.0]
    assert most_in_one_second(steady) <= 55
    assert times[-1] - times[0] >= 3.7  # (250 - 50 burst) / 50 per second
    assert "rate limit OpenAICompatible: paced" in summary
    assert b"asyncprov:OpenAICompatible:rpm" in own_redis.command("KEYS", "*")  # one budget


def test_without_redis_the_rate_is_divided_among_workers(
    ray_address: str, server: OpenAITestServer, tmp_path: Path
) -> None:
    """Without --redis each of the 2 workers gets half of --rpm 3000: together they
    stay within 50 requests/s after the burst."""
    source = write_input(tmp_path / "in.jsonl", 150)
    target = tmp_path / "out.jsonl"
    code, summary = cli(
        source, target, "--ray", ray_address, "--base-url", server.base_url,
        "--rpm", "3000", "--progress", "none",
    )  # fmt: skip
    assert code == 0, summary
    times = sorted(r.at for r in server.requests)
    steady = [t for t in times if t >= times[0] + 1.0]
    assert most_in_one_second(steady) <= 55
    assert times[-1] - times[0] >= 1.7  # (150 - 50 burst) / 50 per second


async def test_ray_batch_from_python(ray_address: str, server: OpenAITestServer) -> None:
    """`RayBatch` yields one result per request, typed errors rebuilt on the driver,
    indices by input position, and the progress counters; a request Ray cannot send
    fails alone."""
    server.add_reply(Reply(status=429, error="slow down", headers={"Retry-After": "0"}))
    requests: list[dict[str, Any]] = [
        {"model": "m", "messages": f"m{i}", "custom_id": f"c{i}"} for i in range(200)
    ]
    requests[5]["user"] = threading.Lock()  # Ray cannot send it: that request alone fails
    batch = RayBatch(iter(requests), base_url=server.base_url, max_retries=0, concurrency=8)
    async with batch as results:
        seen = {result.custom_id: result async for result in results}
    assert len(seen) == 200 and len(server.requests) == 199
    unsendable = seen.pop("c5")
    assert isinstance(unsendable.error, InvalidRequestError) and unsendable.index == 5
    assert "cannot be sent to a Ray worker" in str(unsendable.error)
    assert {r.index for r in seen.values()} == set(range(200)) - {5}
    assert all(seen[f"c{r.index}"] is r for r in seen.values())
    failures = [r for r in seen.values() if not r.ok]
    assert len(failures) == 1
    assert isinstance(failures[0].error, RateLimitError)
    assert failures[0].error.status == 429 and failures[0].error.code == "rate_limit_error"
    assert batch.progress.done == 198 and batch.progress.failed == 2
    assert batch.progress.in_flight == 0


def test_run_batch_from_python(ray_address: str, server: OpenAITestServer, tmp_path: Path) -> None:
    """`run_batch(IN, OUT)` runs a file as the command does, and resumes."""
    source = write_input(tmp_path / "in.jsonl", 40)
    target = tmp_path / "out.jsonl"
    out = io.StringIO()
    assert run_batch(source, target, base_url=server.base_url, out=out) == 0
    assert "batch: 40 done" in out.getvalue()
    out = io.StringIO()
    assert run_batch(source, target, base_url=server.base_url, out=out) == 0
    assert "0 done, 0 failed, 40 already in OUT" in out.getvalue()
    assert len(out_lines(target)) == 40 and len(server.requests) == 40


def test_a_crash_loop_stops_with_one_line(
    ray_address: str, server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Workers that die on every chunk stop the job with BatchWorkerError after
    max_worker_deaths, instead of sending the chunk for ever."""
    requests = [{"model": "m", "messages": "x", "custom_id": "a", "_exit": _Exit()}]
    batch = RayBatch(requests, base_url=server.base_url, max_worker_deaths=2, workers=1)

    async def run() -> None:
        async with batch as results:
            async for _ in results:
                pass

    import anyio

    with pytest.raises(BatchWorkerError, match="died 2 times in a row"):
        anyio.run(run)
    assert batch.worker_deaths == 2


class _Exit:
    """Unpickled in a worker, it ends that worker's process at once."""

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return os._exit, (1,)


def test_options_are_checked(ray_address: str, tmp_path: Path) -> None:
    """Bad counts are ConfigurationErrors; workers that do not fit the cluster, and a
    run without Ray installed, are one line each from the command (exit status 2)."""
    with pytest.raises(ConfigurationError, match="workers must be"):
        RayBatch([], workers=0)
    with pytest.raises(ConfigurationError, match="unexpected keyword argument 'bogus'"):
        RayBatch([], bogus=1)
    source = write_input(tmp_path / "in.jsonl", 1)
    flags = ["--base-url", "http://127.0.0.1:9/v1", "--ray"]
    command = [sys.executable, "-m", "asyncprov", "batch", str(source), str(tmp_path / "o")]
    too_many = subprocess.run(
        [*command, *flags, ray_address, "--workers", "8"], cwd=ROOT, capture_output=True, text=True
    )
    assert too_many.returncode == 2
    assert too_many.stderr == (
        "asyncprov: ConfigurationError: 8 worker(s) of 1 CPU each need 8 CPUs, and the Ray "
        "cluster has 2: fewer workers, or fewer CPUs each\n"
    )
    no_ray = "import sys; sys.modules['ray'] = None; from asyncprov.cli import main; "
    no_ray += f"sys.exit(main({['batch', str(source), str(tmp_path / 'o'), *flags]!r}))"
    missing = subprocess.run(
        [sys.executable, "-c", no_ray], cwd=ROOT, capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert missing.stderr == (
        "asyncprov: ConfigurationError: a batch on Ray needs the ray package: "
        "pip install 'asyncprov[ray]'\n"
    )
    assert cli(source, tmp_path / "o", "--workers", "3")[0] == 2  # --workers without --ray


def test_a_worker_crash_loop_stops_the_command_with_one_line(
    ray_address: str,
    server: OpenAITestServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Workers killed again as soon as they start: the command stops with one line on
    stderr (no traceback), exit status 1, and OUT holds no line twice."""
    server.default = Reply(delay=0.5)
    source = write_input(tmp_path / "in.jsonl", 200)
    target = tmp_path / "out.jsonl"
    stop = threading.Event()

    def kill_workers() -> None:
        while not stop.is_set():
            for pid in batch_workers():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_workers)
    killer.start()
    try:
        code, _ = cli(
            source, target, "--ray", ray_address, "--base-url", server.base_url,
            "--progress", "none",
        )  # fmt: skip
    finally:
        stop.set()
        killer.join()
    assert code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("asyncprov")]
    assert len(lines) == 1, err
    assert lines[0].startswith("asyncprov: BatchWorkerError: Ray worker ")
    assert "died 3 times in a row without finishing a request" in lines[0]
    assert "Traceback" not in err
    ids = [line["custom_id"] for line in out_lines(target)] if target.exists() else []
    assert len(ids) == len(set(ids))


def test_ctrl_c_stops_intake_and_drains(
    ray_address: str, server: OpenAITestServer, tmp_path: Path
) -> None:
    """SIGINT to a `batch --ray` driver: it takes no new requests, waits for those in
    flight and writes them, so every request the server saw has its line in OUT."""
    server.default = Reply(delay=0.05)
    source = write_input(tmp_path / "in.jsonl", 3000)
    target = tmp_path / "out.jsonl"
    command = [
        sys.executable, "-m", "asyncprov", "batch", str(source), str(target),
        "--ray", ray_address, "--base-url", server.base_url, "--concurrency", "16",
        "--progress", "none",
    ]  # fmt: skip
    driver = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_lines(target, 200)
        driver.send_signal(signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130, stderr
    assert "interrupted: taking no new requests" in stderr
    assert "dropped" not in stdout
    ids = [line["custom_id"] for line in out_lines(target)]
    assert len(ids) == len(set(ids)) < 3000
    assert sorted(sent(server)) == sorted(ids)


async def test_arun_batch_from_async_code(
    ray_address: str, server: OpenAITestServer, tmp_path: Path
) -> None:
    """`arun_batch` runs the file off the event loop, which keeps serving meanwhile."""
    source = write_input(tmp_path / "in.jsonl", 20)
    target = tmp_path / "out.jsonl"
    out = io.StringIO()
    assert await arun_batch(source, target, base_url=server.base_url, out=out) == 0
    assert "batch: 20 done" in out.getvalue()
    assert sorted(sent(server)) == sorted(line["custom_id"] for line in out_lines(target))


def test_importing_asyncprov_ray_imports_no_ray() -> None:
    """`import asyncprov.ray` (and the batch command) load Ray only when a batch starts."""
    code = "import sys, asyncprov.ray, asyncprov.cli._main; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def _ray_servers() -> int:
    """Ray control processes (GCS servers) on this machine."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += b"gcs_server" in (entry / "cmdline").read_bytes()
    return count


def test_without_an_address_the_command_runs_and_leaves_no_ray_behind(
    ray_address: str, server: OpenAITestServer, tmp_path: Path
) -> None:
    """`--ray` with no ADDRESS (and no RAY_ADDRESS) runs the file on a Ray cluster it
    finds or starts, and stops what it started: no Ray process is left behind."""
    source = write_input(tmp_path / "in.jsonl", 50)
    target = tmp_path / "out.jsonl"
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    before = _ray_servers()
    command = [sys.executable, "-m", "asyncprov", "batch", str(source), str(target), "--ray"]
    command += ["--workers", "1", "--base-url", server.base_url, "--progress", "none"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "batch: 50 done" in run.stdout and "ray: 1 worker(s)" in run.stdout
    assert sorted(sent(server)) == sorted(line["custom_id"] for line in out_lines(target))
    deadline = time.monotonic() + 10
    while _ray_servers() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ray_servers() == before


async def test_ray_batch_takes_an_async_input_and_calls_progress(
    ray_address: str, server: OpenAITestServer
) -> None:
    """An async generator as input is read as workers have room and closed at the end;
    `progress` sees every result; `stop()` takes no new requests."""
    closed = []

    async def requests() -> Any:
        try:
            for i in range(1000):
                yield {"model": "m", "messages": f"a{i}", "custom_id": f"a{i}"}
        finally:
            closed.append(True)

    seen: list[int] = []
    batch = RayBatch(
        requests(),
        base_url=server.base_url,
        concurrency=4,
        progress=lambda p: seen.append(p.finished),
    )
    async with batch as results:
        ids = []
        async for result in results:
            ids.append(result.custom_id)
            if len(ids) == 40:
                batch.stop()
    assert closed == [True]
    assert 40 <= len(ids) < 1000 and len(set(ids)) == len(ids)
    assert sorted(sent(server)) == sorted(ids)  # what was taken was run, and written
    assert seen == list(range(1, len(ids) + 1))

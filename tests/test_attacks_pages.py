"""Attacks on the pipeline pages' server, `reconciler serve`, through real sockets.

Each test is one attempt, written as the attacker would try it against the real
command (a subprocess): a client that holds connections, a page of hostile text.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import test_watch
from tests.people import People
from tests.repositories import SeedRepo
from tests.runner import serve_process
from tests.scenarios import ECOMMERCE, one_plan_landed, plan
from tests.test_attacks_surfaces import commit_path, read_all, served_connections
from tests.test_crash_races import check_records


@contextmanager
def serving(path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`reconciler serve` on `path`: the process and its port."""
    with serve_process(path) as (server, address):
        yield server, int(address.rstrip("/").rsplit(":", 1)[1])


def get_page(port: int, source: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), 10, (source, 0)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return read_all(sock)


def test_serve_holds_no_connection_past_the_header_deadline_nor_more_than_its_caps(
    tmp_path: Path, people: People
) -> None:
    # `serve` ran on uvicorn's own protocol: no deadline for a request's head and no cap
    # on connections, so idle connections and a head sent a byte now and then were held
    # for ever, a descriptor each, as many as one address cared to open.
    repo = SeedRepo.create(tmp_path, people)
    with serving(repo.path) as (server, port):
        assert get_page(port).startswith(b"HTTP/1.1 200 ")  # accepting, not only listening
        held = [
            socket.create_connection(("127.0.0.1", port), 10, ("127.0.0.2", 0)) for _ in range(30)
        ]
        trickling = socket.create_connection(("127.0.0.1", port), 10, ("127.0.0.3", 0))
        trickling.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            # One address waits with 8 connections at most; another still gets its page.
            time.sleep(0.5)
            assert served_connections(server.pid, port) <= 9
            assert get_page(port).startswith(b"HTTP/1.1 200 ")
            began = time.monotonic()
            for _ in range(8):
                time.sleep(0.5)
                trickling.sendall(b"X")  # a header byte now and then: cut off all the same
            assert time.monotonic() - began < 5
        except OSError:
            pass  # the server cut the trickle off (as it should, at the header deadline)
        try:
            test_watch.wait_until(
                lambda: served_connections(server.pid, port) == 0, 5, "the deadline"
            )
            assert read_all(trickling) == b""
        finally:
            for sock in [*held, trickling]:
                sock.close()
        assert get_page(port).startswith(b"HTTP/1.1 200 ")
        assert os.path.exists(f"/proc/{server.pid}")


def fetch(port: int, path: bytes, timeout: float = 10) -> tuple[bytes, str]:
    """GET `path`: the status line and the body, decoded as the page says (UTF-8)."""
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head, _, body = read_all(sock).partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body.decode("utf-8")


# What reorders the text after it (Trojan Source), and what a terminal acts on.
_REORDERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def test_a_file_name_that_is_not_utf8_or_a_bidi_name_cannot_break_or_reorder_the_pages(
    tmp_path: Path, people: People
) -> None:
    # Any pusher's file whose name is not UTF-8: its bytes (lone surrogates) could not be
    # encoded, and the audit trail answered 500 for good, a traceback on serve's stderr.
    # A name with a right-to-left override would show what follows it reordered (pinned:
    # the refusal that quotes it escapes it).
    repo = SeedRepo.create(tmp_path, people)
    named = plan(
        "x\u202etnuoc ton seod\u202c", "quality-assurance", [ECOMMERCE], source="development"
    )
    repo.commit(people.alice, {"plans/reordered.yaml": named})
    commit_path(repo, b"plans/caf\xe9-\xff.yaml", named)
    with serving(repo.path) as (_server, port):
        for path in (b"/", b"/history", b"/plans/reordered", b"/environments/quality-assurance"):
            status, body = fetch(port, path)
            assert status == b"HTTP/1.1 200 OK", (path, body[-400:])
            assert _REORDERS.findall(body) == [], path
        _status, body = fetch(port, b"/")
        assert "x\\u202etnuoc ton seod\\u202c" in body  # shown, as a visible escape


def test_a_burst_of_event_streams_opens_no_more_than_the_cap(
    tmp_path: Path, people: People
) -> None:
    # The cap was checked when a stream was asked for and counted when it began: a burst
    # of requests (from as many addresses as the per-address caps ask) all passed the
    # check before one began, and nearly three times the cap stayed open, polling.
    repo = SeedRepo.create(tmp_path, people)
    with serving(repo.path) as (_server, port):
        assert get_page(port).startswith(b"HTTP/1.1 200 ")
        burst = [
            socket.create_connection(("127.0.0.1", port), 10, (f"127.0.1.{n % 60 + 1}", 0))
            for n in range(300)
        ]
        try:
            for sock in burst:
                sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answers = [sock.recv(12, socket.MSG_WAITALL) for sock in burst]
            opened = answers.count(b"HTTP/1.1 200")
            assert opened + answers.count(b"HTTP/1.1 503") == len(burst)
            assert opened <= 64
        finally:
            for sock in burst:
                sock.close()


def test_a_page_number_of_thousands_of_digits_answers_the_last_page_not_500(
    tmp_path: Path, people: People
) -> None:
    # int() reads no number of more than 4,300 digits: `?page=` with 5,000 of them fits
    # in a request's head (64 KiB) and answered 500, a traceback on serve's stderr.
    repo = one_plan_landed(tmp_path, people)
    with serving(repo.path) as (_server, port):
        status, body = fetch(port, b"/history?page=" + b"1" * 5000)
        assert status == b"HTTP/1.1 200 OK", body[-400:]
        assert "Entries 1\u20132 of 2, newest first." in body


@contextmanager
def a_pass_holding(repo: SeedRepo) -> Iterator[None]:
    """The state's write lock held, as a pass holds it while it walks and publishes."""
    [database] = repo.path.rglob("*.sqlite3")
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize(
    ("path", "shown"),
    [(b"/plans/one", "plans/one.yaml"), (b"/environments/development", "development")],
)
def test_a_plan_or_environment_page_is_served_at_once_while_a_pass_holds_the_state(
    tmp_path: Path, people: People, path: bytes, shown: str
) -> None:
    # The pages read a page's entries from the state on each request: while a pass held
    # it (a walk, a push to a slow remote), each plan and environment page waited the
    # state's 15 s and answered 503, where it had been served from the snapshot at once.
    repo = one_plan_landed(tmp_path, people)
    with serving(repo.path) as (_server, port):
        assert fetch(port, path)[0] == b"HTTP/1.1 200 OK"
        with a_pass_holding(repo):
            began = time.monotonic()
            status, body = fetch(port, path, 30)
            waited = time.monotonic() - began
        assert status == b"HTTP/1.1 200 OK", body[-600:]
        assert waited < 5
        assert shown in body
        assert "is in use by another reconciler process" in body  # where its entries stand


def damage_the_state(repo: SeedRepo) -> None:
    """The state database made another file: a disk's fault, a copy gone wrong."""
    [database] = repo.path.rglob("*.sqlite3")
    for left in database.parent.glob(database.name + "-*"):  # its write-ahead log
        left.unlink()
    database.write_bytes(b"not a database " * 512)


def served_once_damaged(repo: SeedRepo, path: bytes) -> tuple[bytes, str]:
    """`path` served (200) from a state that is then damaged; its answer after."""
    with serving(repo.path) as (_server, port):
        assert fetch(port, path)[0] == b"HTTP/1.1 200 OK"
        damage_the_state(repo)
        return fetch(port, path)


def test_a_plan_page_is_served_from_the_snapshot_when_the_state_cannot_be_used(
    tmp_path: Path, people: People
) -> None:
    # It answered 503 with nothing of the plan, where the pages keep the last snapshot
    # when a read fails (the pipeline page is still served from it).
    status, body = served_once_damaged(one_plan_landed(tmp_path, people), b"/plans/one")
    assert status == b"HTTP/1.1 200 OK", body[-600:]
    assert "plans/one.yaml" in body
    assert "cannot be used" in body  # where its entries stand


def test_the_audit_trail_of_a_state_that_cannot_be_used_is_unavailable_not_a_bad_request(
    tmp_path: Path, people: People
) -> None:
    status, body = served_once_damaged(SeedRepo.create(tmp_path, people), b"/history")
    assert status == b"HTTP/1.1 503 Service Unavailable", body[-600:]
    assert "cannot be used" in body


def test_the_audit_trail_while_a_pass_holds_the_state_is_unavailable_not_a_bad_request(
    tmp_path: Path, people: People
) -> None:
    # It waited the state's 15 s, then answered 400, as for a filter that names no one.
    repo = SeedRepo.create(tmp_path, people)
    with serving(repo.path) as (_server, port):
        assert fetch(port, b"/history")[0] == b"HTTP/1.1 200 OK"
        with a_pass_holding(repo):
            began = time.monotonic()
            status, body = fetch(port, b"/history", 30)
            waited = time.monotonic() - began
        assert status == b"HTTP/1.1 503 Service Unavailable", body[-600:]
        assert waited < 5
        assert "is in use by another reconciler process" in body


def test_pages_read_beside_apply_neither_fail_nor_stop_its_runs(
    tmp_path: Path, people: People
) -> None:
    # Each plan, environment and audit-trail page reads the state the service writes (and
    # may walk it on, as a verify beside the service does): read all along the service's
    # passes, no page fails and every run is recorded once, as decided.
    repo = SeedRepo.create(tmp_path, people)
    answers: list[bytes] = []
    done = threading.Event()
    with serve_process(repo.path, "--state-dir", str(repo.state_dir)) as (_server, address):
        port = int(address.rstrip("/").rsplit(":", 1)[1])

        def read_pages() -> None:
            paths = (b"/plans/beside-0", b"/environments/development", b"/history")
            while not done.is_set():
                for path in paths:
                    answers.append(fetch(port, path, 30)[0])

        reader = threading.Thread(target=read_pages)
        reader.start()
        try:
            for index in range(4):
                version = {"name": "ecommerce", "version": f"1.0.{index}"}
                content = plan(f"beside-{index}", "development", [version])
                repo.commit(people.alice, {f"plans/beside-{index}.yaml": content})
                result = subprocess.run(
                    repo.apply_command(), capture_output=True, text=True, check=False
                )
                assert result.returncode == 0, result.stderr
        finally:
            done.set()
            reader.join(60)
    assert answers
    assert set(answers) <= {b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"}, set(answers)
    found = check_records(repo.path)
    assert sorted(found) == [f"beside-{index}.1" for index in range(4)]
    assert all(run["finishes"][0]["Result"] == "succeeded" for run in found.values())
    assert repo.reconciler("verify").exit_code == 0

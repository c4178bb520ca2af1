"""`wfmctl search`: words, phrases and prefixes across executions, filters, context, paging,
and an index that follows new rows and deletions."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import apsw
from conftest import Daemon, MakeDaemon, metadata, text_field, write_workflow
from hypothesis import given, settings
from hypothesis import strategies as st

from wfmd.errors import Refused
from wfmd.store.search_terms import parse

PRINTER = """
import sys
words = sys.argv[sys.argv.index("--text") + 1]
for i in range(200):
    print(f"filler line {i} nothing to see")
print(f"ERROR disk full on /dev/sda: {words}")
event = {"type": "task_progress", "task_id": "t1", "message": "Zürich backup"}
print("__WF_EVENT__:" + json.dumps(event), file=sys.stderr)
print("carriage\\tconnection reset by peer")
print("Grüße aus ZÜRICH")
print("the end")
"""


def search(daemon: Daemon, *args: str) -> Any:
    result = daemon.wfmctl("search", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def searchable(daemon: Daemon, query: str, expected: int, *args: str) -> Any:
    """The search's reply once the indexer has caught up (it runs in the background)."""
    deadline = time.monotonic() + 10
    while True:
        page = search(daemon, query, *args)
        if len(page["hits"]) >= expected or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


def test_words_phrases_prefixes_and_filters(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    write_workflow(workflow_dir, "printer", PRINTER, metadata("printer", text_field("text")))
    write_workflow(workflow_dir, "other", PRINTER, metadata("other", text_field("text")))
    daemon = make_daemon().start()
    first = daemon.run_and_wait("printer", text="alpha")
    second = daemon.run_and_wait("other", text="beta")

    page = searchable(daemon, "disk full", 2)
    assert [h["handle"] for h in page["hits"]] == [second, first]  # newest first
    hit = page["hits"][0]
    assert hit["workflow_id"] == "other"
    assert hit["entry"]["line"] == "ERROR disk full on /dev/sda: beta"
    assert hit["entry"]["seq"] == 200
    assert page["next_before"] is None and page["backlog"] == 0

    assert [h["handle"] for h in search(daemon, '"disk full"')["hits"]] == [second, first]
    assert search(daemon, '"full disk"')["hits"] == []  # a phrase keeps its order
    assert len(search(daemon, "conn* RESET")["hits"]) == 2  # prefix; case ignored
    zurich = search(daemon, "zurich")["hits"]  # accents and case ignored; events searched
    assert sorted(h["entry"]["type"] for h in zurich) == ["raw_output"] * 2 + ["task_progress"] * 2
    assert {h["entry"]["line"] for h in zurich if h["entry"]["type"] == "raw_output"} == {
        "Grüße aus ZÜRICH"
    }
    assert len(search(daemon, "sda")["hits"]) == 2
    assert search(daemon, "nothing see disk")["hits"] == []  # all words in one line
    assert [h["handle"] for h in search(daemon, "disk", "--workflow", "printer")["hits"]] == [first]
    assert [h["handle"] for h in search(daemon, "disk", "--handle", second[:8])["hits"]] == [second]
    assert search(daemon, "disk", "--status", "Failed")["hits"] == []
    assert search(daemon, "disk", "--since", "2099-01-01")["hits"] == []
    assert len(search(daemon, "disk", "--until", "2099-01-01")["hits"]) == 2

    around = search(daemon, "disk", "-C", "2", "--limit", "1")
    (hit,) = around["hits"]
    assert [e["seq"] for e in hit["before"]] == [198, 199]
    assert [e["seq"] for e in hit["after"]] == [201, 202]
    assert around["next_before"] is not None
    rest = search(daemon, "disk", "--before", str(around["next_before"]))
    assert [h["handle"] for h in rest["hits"]] == [first]

    text = daemon.wfmctl("search", "disk", "-C", "1")
    assert text.returncode == 0, text.stderr
    assert f"{second[:8]}  other" in text.stdout
    assert ">    200  ERROR disk full on /dev/sda: beta" in text.stdout


def test_regex_in_wfmctl(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    write_workflow(workflow_dir, "printer", PRINTER, metadata("printer", text_field("text")))
    daemon = make_daemon().start()
    first = daemon.run_and_wait("printer", text="alpha")
    second = daemon.run_and_wait("printer", text="beta")
    found = search(daemon, "--regex", r"disk\s+full on /dev/sd[a-z]: (alpha|beta)$")
    assert [h["handle"] for h in found["hits"]] == [second, first]
    assert found["hits"][0]["entry"]["line"] == "ERROR disk full on /dev/sda: beta"
    assert found["hits"][0]["entry"]["seq"] == 200
    one = search(daemon, "--regex", "^filler line 1[0-9]{2} ", "--handle", first, "-C", "1")
    assert [h["entry"]["seq"] for h in one["hits"][:2]] == [199, 198]
    assert [e["seq"] for e in one["hits"][0]["after"]] == [200]
    assert len(one["hits"]) == 20  # the default limit
    for bad in (["--regex", "("], ["disk", "--regex", "x"], []):
        refused = daemon.wfmctl("search", *bad)
        assert refused.returncode == 2, (bad, refused.stderr)
        assert "Traceback" not in refused.stderr


def test_paging_walks_every_match_once(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    body = "for i in range(5000):\n    print(f'needle {i}' if i % 7 == 0 else f'hay {i}')\n"
    write_workflow(workflow_dir, "many", body, metadata("many"))
    daemon = make_daemon().start()
    handle = daemon.run_and_wait("many")
    searchable(daemon, "needle", 20)
    seen: list[int] = []
    before: list[str] = []
    while True:
        page = search(daemon, "needle", "--limit", "100", *before)
        seen += [h["entry"]["seq"] for h in page["hits"]]
        assert all(h["handle"] == handle for h in page["hits"])
        if page["next_before"] is None:
            break
        before = ["--before", str(page["next_before"])]
    assert seen == [i for i in range(4999, -1, -1) if i % 7 == 0]


# Words that Python's and the index's Unicode tables split or fold differently: fractions
# (NFKD splits them in two), superscripts, ß, a ligature, a letter newer than Unicode 6.1 (Georgian
# Mtavruli), a mark between letters.
ODD_WORDS = ["¼", "x²", "Straße", "ﬁle", "ᲐᲑ", "e\u0301x"]


def test_words_the_tables_disagree_on_are_found_or_missed_never_an_error(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    body = f"for word in {ODD_WORDS!r}:\n    print('odd ' + word)\n"
    write_workflow(workflow_dir, "odd", body, metadata("odd"))
    daemon = make_daemon().start()
    handle = daemon.run_and_wait("odd")
    searchable(daemon, "odd", len(ODD_WORDS))
    for word in ODD_WORDS:
        for query in (word, f"{word}*", f'"odd {word}"'):
            hits = search(daemon, query)["hits"]
            assert [(h["handle"], h["entry"]["line"]) for h in hits] == [(handle, f"odd {word}")]


@settings(max_examples=2000, deadline=None, database=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_the_index_finds_every_line_a_query_matches(query: str, noise: str) -> None:
    """Any query is refused or runs on the index; a line it matches is among the index's hits."""
    try:
        terms = parse(query)
    except Refused:
        return
    line = f"{noise} {query}"
    index = apsw.Connection(":memory:")
    index.execute("CREATE VIRTUAL TABLE t USING fts5(text, content='', detail=none)")
    index.execute("INSERT INTO t (rowid, text) VALUES (1, ?)", (line,))
    found = index.execute("SELECT count(*) FROM t WHERE t MATCH ?", (terms.fts_query(),)).get
    assert terms.matches(line) and found == 1


def test_bad_queries_are_refused(daemon: Daemon) -> None:
    result = daemon.wfmctl("search", "***")
    assert result.returncode == 1
    assert "nothing to search for" in result.stderr
    assert "Traceback" not in result.stderr


def test_ping_shows_the_index_catching_up(daemon: Daemon) -> None:
    daemon.run_and_wait("echo_params", message="indexed soon")
    deadline = time.monotonic() + 10
    while True:
        with daemon.client() as client:
            backlog = client.ping().search_backlog
        if backlog == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert backlog == 0
    assert "search index" in daemon.wfmctl("ping").stdout


def test_rows_queued_while_indexing_is_off_are_indexed_later(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    config = tmp_path / "no-index.toml"
    config.write_text("search_index = false\n")
    daemon = make_daemon(["--config", str(config)]).start()
    daemon.run_and_wait("echo_params", message="queued words")
    with daemon.client() as client:
        assert client.ping().search_backlog is None
    page = search(daemon, "queued")
    assert page["hits"] == []
    daemon.stop()
    daemon.extra_args.remove("--config")
    daemon.extra_args.remove(str(config))
    daemon.start()
    assert searchable(daemon, "queued words", 1)["hits"]


def index_matches(daemon: Daemon, word: str) -> int:
    """Rows the search index itself lists for `word`."""
    conn = apsw.Connection(str(daemon.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        count = conn.execute(
            "SELECT count(*) FROM log_search WHERE log_search MATCH ?", (f'"{word}"',)
        ).get
    finally:
        conn.close()
    assert isinstance(count, int)
    return count


def test_compressed_rows_are_indexed_and_deleted_rows_leave_the_index(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    write_workflow(workflow_dir, "printer", PRINTER, metadata("printer", text_field("text")))
    config = tmp_path / "no-index.toml"
    config.write_text("search_index = false\n")
    cold = ["--retention-interval", "0", "--compress-after", "0.001"]
    daemon = make_daemon(["--config", str(config), *cold]).start()
    first = daemon.run_and_wait("printer", text="alpha")
    second = daemon.run_and_wait("printer", text="beta")
    with daemon.client() as client:
        client.prune(keep=1000)  # removes nothing; compresses both, as they are cold
    conn = apsw.Connection(str(daemon.database), flags=apsw.SQLITE_OPEN_READONLY)
    compressed = conn.execute(
        "SELECT count(*) FROM execution_logs WHERE raw_size <> length(data)"
    ).get
    conn.close()
    assert compressed, "nothing was compressed: the test would prove nothing"

    daemon.stop()
    daemon.extra_args = cold
    daemon.start()
    page = searchable(daemon, "disk full", 2)
    assert [h["handle"] for h in page["hits"]] == [second, first]
    assert index_matches(daemon, "sda") == 2

    assert daemon.wfmctl("delete", first).returncode == 0
    assert [h["handle"] for h in search(daemon, "disk full")["hits"]] == [second]
    assert index_matches(daemon, "sda") == 1

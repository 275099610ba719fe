"""A text file whose last line has no line ending may be cut off inside its last value: FILE-012 (issue 12).

``…,51,114`` for ``…,51,1147`` is a well-formed row, so no other check can see the cut. Intake refuses it,
unless the feed allows it *and* the file came with a ``.done`` manifest (whose sha256 and row count are
what prove such a file whole). No database here; tests/integration/test_truncated_ingest.py goes through
the real SFTP drop, ingest and publish.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partnerflow.core.config import ConfigError, Feed, config_path, load_config
from partnerflow.core.periods import Period
from partnerflow.intake import reader
from partnerflow_dev import synthetic

KEY = bytes(range(32))
PERIOD = Period.from_id("2026Q3")
CONFIG = load_config()
CONFIG_PATH = config_path()
CSV_FEEDS = [f.id for f in CONFIG.feeds if f.format.kind == "csv"]
SAMPLES = {
    feed_id: synthetic.sample_return(CONFIG.feed(feed_id).dataset, PERIOD, seed=1)
    for feed_id in CSV_FEEDS
    if feed_id != "council_referrals"
} | {"council_referrals": synthetic.referrals_csv(PERIOD, seed=1, n=12)}


def problems_of(tmp_path: Path, data: bytes, feed: Feed, *, declared_rows: int | None = None):
    path = tmp_path / "landed"
    path.write_bytes(data)
    problems = reader.Problems()
    dataset = CONFIG.dataset(feed.dataset)
    rows = list(
        reader.minimised_rows(path, feed=feed, dataset=dataset, key=KEY, problems=problems, declared_rows=declared_rows)
    )
    return rows, {key: tuple(numbers) for key, numbers in problems.found.items()}


def with_format(feed_id: str, completeness: str = "rename", **format_options) -> Feed:
    """A demo feed with its format options changed (and its SFTP completeness rule)."""
    feed = CONFIG.feed(feed_id)
    document = feed.model_dump()
    document["transport"]["completeness"] = completeness
    document["format"].update(format_options)
    return Feed.model_validate(document)


@pytest.mark.parametrize("feed_id", CSV_FEEDS)
def test_each_csv_feeds_complete_return_reads_cleanly(tmp_path, feed_id):
    data = SAMPLES[feed_id]
    assert data.endswith(b"\n")
    rows, problems = problems_of(tmp_path, data, CONFIG.feed(feed_id))
    assert problems == {} and rows


def cuts(feed_id: str) -> list[int]:
    """Every length a cut of the feed's sample can leave that does not end at a line end (nor is 0 or all)."""
    data = SAMPLES[feed_id]
    return [n for n in range(1, len(data)) if data[n - 1 : n] != b"\n"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(CSV_FEEDS).flatmap(lambda f: st.tuples(st.just(f), st.sampled_from(cuts(f)))))
def test_a_return_cut_at_any_byte_but_a_line_end_is_refused(tmp_path, feed_and_length):
    feed_id, length = feed_and_length
    cut = SAMPLES[feed_id][:length]
    _, problems = problems_of(tmp_path, cut, CONFIG.feed(feed_id))
    lines = cut.count(b"\n")  # whole lines before the cut one: the cut line's row number, the header's 0
    assert problems.get(("FILE-012", "")) == ((lines,) if lines else ())


def test_the_health_file_of_the_issue_cut_inside_its_last_value(tmp_path):
    data = SAMPLES["health_icb"]
    assert data.endswith(b",51,1147\r\n")
    rows, problems = problems_of(tmp_path, data[: -len(b"7\r\n")], CONFIG.feed("health_icb"))
    assert problems == {("FILE-012", ""): (len(rows),)}
    for cut in (data[:-1], data[: -len(b"\r\n")]):  # a CRLF split in two, or no line end at all
        assert problems_of(tmp_path, cut, CONFIG.feed("health_icb"))[1] == {("FILE-012", ""): (len(rows),)}


def test_a_tab_separated_file_is_held_to_the_same_rule(tmp_path):
    feed = with_format("health_icb", delimiter="\t")
    data = SAMPLES["health_icb"].replace(b",", b"\t")
    assert problems_of(tmp_path, data, feed)[1] == {}
    assert ("FILE-012", "") in problems_of(tmp_path, data[:-3], feed)[1]


def test_a_header_without_a_line_end_is_the_whole_file(tmp_path):
    header = SAMPLES["health_icb"].split(b"\r\n")[0]
    assert problems_of(tmp_path, header, CONFIG.feed("health_icb"))[1] == {("FILE-012", ""): ()}
    assert problems_of(tmp_path, b"\xef\xbb\xbf" + header, CONFIG.feed("health_icb"))[1] == {("FILE-012", ""): ()}


def test_blank_or_short_last_lines_without_a_line_end_are_refused_too(tmp_path):
    data = SAMPLES["health_icb"]
    rows = data.count(b"\r\n") - 1
    for tail in (b",", b"   ", b"AE_SELF_HARM_U18,16-17", b'AE_SELF_HARM_U18,"16-'):
        assert problems_of(tmp_path, data + tail, CONFIG.feed("health_icb"))[1] == {("FILE-012", ""): (rows + 1,)}


def test_a_feed_may_allow_it_only_for_a_file_with_a_manifest(tmp_path):
    allowing = with_format("health_icb", "done_marker", allow_unterminated_last_line=True)
    data = SAMPLES["health_icb"].rstrip(b"\r\n")
    whole_rows = data.count(b"\r\n")
    rows, problems = problems_of(tmp_path, data, allowing, declared_rows=whole_rows)
    assert problems == {} and len(rows) == whole_rows  # the manifest's sha256 and row count vouch for it
    assert problems_of(tmp_path, data, allowing)[1] == {("FILE-012", ""): (whole_rows,)}  # no manifest
    short = data.rsplit(b",", 2)[0]  # the last row cut to two of its four fields: plainly cut off
    assert problems_of(tmp_path, short, allowing, declared_rows=whole_rows)[1] == {("FILE-008", ""): (whole_rows,)}


def test_allowing_it_needs_a_done_marker_and_a_csv(tmp_path):
    with pytest.raises(ValueError, match="done_marker"):
        with_format("health_icb", allow_unterminated_last_line=True)
    with pytest.raises(ValueError, match="csv files only"):
        with_format("council_children_in_care", "done_marker", allow_unterminated_last_line=True)
    yaml_text = (CONFIG_PATH.read_text()).replace(
        "format: {kind: csv, encoding: windows-1252}",
        "format: {kind: csv, encoding: windows-1252, allow_unterminated_last_line: true}",
    )
    assert "allow_unterminated_last_line" in yaml_text
    (tmp_path / "partnership.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError, match="allow_unterminated_last_line needs completeness: done_marker"):
        load_config(tmp_path / "partnership.yaml")


def test_the_report_names_the_rule_and_the_row_and_no_value(tmp_path):
    data = SAMPLES["health_icb"][: -len(b"7\r\n")]
    path = tmp_path / "landed"
    path.write_bytes(data)
    problems = reader.Problems()
    dataset = CONFIG.dataset("health_icb")
    list(reader.minimised_rows(path, feed=CONFIG.feed("health_icb"), dataset=dataset, key=KEY, problems=problems))
    report = problems.report(9, file_id=42)
    rejected = reader.FileRejected(report, problems.summary())
    (failure,) = report["failures"]
    assert failure["code"] == "FILE-012" and failure["row_numbers"] == [9]
    assert "no line ending" in failure["message"] and "cut off" in failure["message"]
    assert str(rejected) == "file 42 rejected at intake: FILE-012 (1 row)"
    assert "114" not in json.dumps(report)

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.inputs import InputError, read_inputs


def test_text_list_skips_blanks_and_comments(tmp_path):
    p = tmp_path / "in.txt"
    p.write_text("# my videos\ndQw4w9WgXcQ\n\n  https://youtu.be/abcdefghijk  \n")
    lines = list(read_inputs(str(p)))
    assert [x.url for x in lines] == ["dQw4w9WgXcQ", "https://youtu.be/abcdefghijk"]
    assert lines[1].where == f"{p}:4"


def test_csv_and_tsv_with_optional_columns(tmp_path):
    (tmp_path / "in.csv").write_text(
        "id, url ,captions\nx1,http://a/v.mp4,http://a/v.vtt\n,http://b/w.mp4,\n,,\n"
    )
    lines = list(read_inputs(str(tmp_path / "in.csv")))
    assert [(x.video_id, x.url, x.captions) for x in lines] == [
        ("x1", "http://a/v.mp4", "http://a/v.vtt"),
        (None, "http://b/w.mp4", None),
    ]
    (tmp_path / "in.tsv").write_text("url\tid\nhttp://a/v.mp4\tz\n")
    assert [x.video_id for x in read_inputs(str(tmp_path / "in.tsv"))] == ["z"]


def test_parquet_list(tmp_path):
    pq.write_table(
        pa.table({"url": ["http://a/1.mp4", None], "id": ["a", "b"]}), tmp_path / "in.parquet"
    )
    lines = read_inputs(str(tmp_path / "in.parquet"))
    # a record without a url is still an input line, with url "" (the pipeline gives it a row)
    assert [(x.url, x.video_id) for x in lines] == [("http://a/1.mp4", "a"), ("", "b")]


def test_a_csv_record_without_url_is_a_line_and_an_all_blank_one_is_not(tmp_path):
    (tmp_path / "in.csv").write_text("url,id,captions\n,x1,\n,,\nhttp://a/v.mp4,,\n , ,\n")
    lines = list(read_inputs(str(tmp_path / "in.csv")))
    assert [(x.url, x.video_id, x.where) for x in lines] == [
        ("", "x1", f"{tmp_path / 'in.csv'}:2"),
        ("http://a/v.mp4", None, f"{tmp_path / 'in.csv'}:4"),
    ]


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("in.csv", b"id,link\n1,http://x\n", "no 'url' column"),
        ("in.txt", b"\xff\xfe\x00garbage\xff", "not UTF-8"),
        ("nothere.txt", None, "not found"),
    ],
)
def test_unusable_lists_fail_clearly(tmp_path, name, data, match):
    if data is not None:
        (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError, match=match):
        list(read_inputs(str(tmp_path / name)))

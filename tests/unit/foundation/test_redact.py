"""Secrets are masked in text and in nested data, and only secrets are."""

from __future__ import annotations

import time

import pytest

from runbook.redact import MASK, Redactor, StreamRedactor, is_secret_name


@pytest.mark.parametrize(
    "name",
    ["DB_PASSWORD", "password", "POSTGRES_PASSWORD", "db_passwd", "DJANGO_SECRET_KEY", "GITHUB_TOKEN",
     "api_key", "ApiKey", "AWS_ACCESS_KEY_ID", "DB_PASS", "credentials"],
)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["app", "USER", "DB_HOST", "BYPASS_CHECKS", "PASSENGERS", "migration"])
def test_ordinary_names(name):
    assert not is_secret_name(name)


def test_known_values_are_masked_everywhere():
    redactor = Redactor(["hunter22"])
    assert redactor.text("pw hunter22 and again hunter22.") == f"pw {MASK} and again {MASK}."


def test_longest_secret_wins():
    redactor = Redactor(["abc", "abcdef"])
    assert redactor.text("x abcdef y abc") == f"x {MASK} y {MASK}"


def test_short_and_empty_values_are_ignored():
    redactor = Redactor(["", "ab", None])  # type: ignore[list-item]
    assert redactor.secrets == ()
    assert redactor.text("ab abc") == "ab abc"


def test_quoted_forms_of_a_known_value_are_masked():
    redactor = Redactor(["p@ss word"])
    assert "ss" not in redactor.text("url postgresql://u:p%40ss%20word@db/x")
    assert "word" not in redactor.text("psql -c 'x' 'p@ss word'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/shop", f"postgresql://app:{MASK}@db:5432/shop"),
        ("DATABASE_URL=postgres://u:p@ss@db/x", f"DATABASE_URL=postgres://u:{MASK}@db/x"),
        ("PGPASSWORD=s3cret psql -h db", f"PGPASSWORD={MASK} psql -h db"),
        ("mysql --password=s3cret db", f"mysql --password={MASK} db"),
        ("tool --password s3cret --user x", f"tool --password {MASK} --user x"),
        ("host=db password=s3cret dbname=x", f"host=db password={MASK} dbname=x"),
        ('{"DB_PASSWORD": "s 3 c"}', f'{{"DB_PASSWORD": "{MASK}"}}'),
        ("SECRET_KEY='abc def'", f"SECRET_KEY='{MASK}'"),
        ("env=PGPASSWORD=s3cret", f"env=PGPASSWORD={MASK}"),
    ],
)
def test_secret_looking_fragments_are_masked(text, expected):
    assert Redactor().text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        'FATAL:  password authentication failed for user "app"',
        "http://example.com:8080/path",
        "Password for user postgres:\nnext line",
        "psql --password -U app",
        "Applying customer.0001_initial... OK",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert Redactor().text(text) == text


def test_value_masks_secret_keys_and_walks_nested_data():
    redactor = Redactor(["hunter22"])
    data = {
        "DB_PASSWORD": "anything",
        "app": "customer",
        "empty_token": "",
        "nested": [{"api_key": 12345, "note": "pw is hunter22"}, ("postgres://u:pw1@h/db",)],
        "count": 3,
    }
    assert redactor.value(data) == {
        "DB_PASSWORD": MASK,
        "app": "customer",
        "empty_token": "",
        "nested": [{"api_key": MASK, "note": f"pw is {MASK}"}, [f"postgres://u:{MASK}@h/db"]],
        "count": 3,
    }
    assert data["DB_PASSWORD"] == "anything"  # a copy, the input is untouched


def test_learn_adds_values_under_secret_keys():
    redactor = Redactor()
    redactor.learn({"vars": {"DB_PASSWORD": "topsecret", "app": "customer"}})
    assert redactor.text("topsecret customer") == f"{MASK} customer"


def test_add_after_use_takes_effect():
    redactor = Redactor(["first1"])
    assert redactor.text("first1 second2") == f"{MASK} second2"
    redactor.add("second2")
    assert redactor.text("first1 second2") == f"{MASK} {MASK}"


def test_long_lines_are_masked_without_backtracking():
    redactor = Redactor(["hunter22"])
    blob = "A" * 300_000 + " x=1" * 50_000 + " hunter22"
    start = time.perf_counter()
    out = redactor.text(blob)
    # A hang guard, not a speed target: a backtracking pattern takes hours on this line, not seconds.
    assert time.perf_counter() - start < 60
    assert out.endswith(MASK)


def test_stream_masks_a_secret_split_across_chunks():
    stream = StreamRedactor(Redactor(["hunter22"]))
    shown = [stream.feed(chunk) for chunk in ("connecting with hun", "ter22 now\nnext ", "line\n", "tail hu")]
    shown.append(stream.flush())
    assert "".join(shown) == f"connecting with {MASK} now\nnext line\ntail hu"
    assert all("hun" not in part for part in shown[:2])
    assert shown[:3] == ["", f"connecting with {MASK} now\n", "next line\n"]


def test_stream_masks_a_secret_assignment_split_across_chunks():
    stream = StreamRedactor(Redactor())
    shown = stream.feed("export DB_PASS") + stream.feed("WORD=abc") + stream.feed("def\n")
    assert shown == f"export DB_PASSWORD={MASK}\n"


def test_stream_releases_an_endless_line_but_not_the_start_of_a_secret():
    stream = StreamRedactor(Redactor(["hunter22"]), max_hold=1000)
    first = stream.feed("." * 2000 + "hunte")
    assert first and set(first) == {"."}
    rest = stream.feed("r22" + "." * 10) + stream.flush()
    assert first + rest == "." * 2000 + MASK + "." * 10
    # A prefix of a secret right where the window would cut is held back too.
    stream = StreamRedactor(Redactor(["hunter22"]), max_hold=1000)
    text = "." * 1700 + "hunt" + "." * 252
    first = stream.feed(text)
    assert not first.endswith(("h", "hu", "hun", "hunt"))
    assert first + stream.flush() == text

"""The SNS adapter: every subject it sends passes SNS's documented rules, whatever the file
name; the body keeps the real name; a refused publish is told apart from a failed one."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batchdrop.adapters.sns import Notice, NoticeRefused, SnsNotifier, fit_subject
from tests.sns_rules import StrictSns, subject_problems

NASTY = {
    "bell": "batchdrop: ring\x07ring.jsonl completed, 3/3 ok",
    "newline": "batchdrop: two\nlines.jsonl completed, 3/3 ok",
    "crlf and tab": "batchdrop: a\r\n\tb.jsonl failed",
    "150 non-ASCII": "batchdrop: " + "日本語のファイル名" * 17 + ".jsonl completed, 1/1 ok",
    "accents": "batchdrop: résumé-naïve-Ærøskøbing.jsonl completed",
    "emoji": "batchdrop: 🚀🚀 launch 🚀.jsonl expired",
    "zero width and bidi": "batchdrop: a\u200bb\u202ec\ufeff.jsonl completed",
    "unicode line breaks": "batchdrop: a\u2028b\u2029c\x85d.jsonl completed",
    "DEL and C1": "batchdrop: a\x7fb\x9bc.jsonl completed",
    "lone surrogate": "batchdrop: a\ud800b.jsonl completed",
    "only control": "\x00\x01\x02\n\t",
    "empty": "",
    "leading space": "   \u00a0 batchdrop: spaced.jsonl completed",
    "fullwidth": "".join(chr(ord(c) + 0xFEE0) for c in "batchdrop: file") + ".jsonl",
    "long ascii": "batchdrop: " + "a-very-long-file-name-" * 10 + ".jsonl completed",
}


def test_the_checker_knows_the_rules_it_holds_the_adapter_to() -> None:
    assert subject_problems("batchdrop: chat.jsonl completed, 10/10 ok") == []
    for bad in ("", " x", "a\x07b", "a\nb", "é", "x" * 100):
        assert subject_problems(bad), bad


@pytest.mark.parametrize("subject", NASTY.values(), ids=NASTY.keys())
def test_fit_subject_passes_sns_rules_for_any_input(subject: str) -> None:
    assert subject_problems(fit_subject(subject)) == []


def test_fit_subject_keeps_a_plain_subject_as_it_is() -> None:
    plain = "batchdrop: chat.jsonl completed, 10/10 ok"
    assert fit_subject(plain) == plain


def test_fit_subject_transliterates_what_it_can_and_marks_what_it_cannot() -> None:
    assert fit_subject("batchdrop: résumé.jsonl") == "batchdrop: resume.jsonl"
    assert fit_subject("batchdrop: \uff46\uff49\uff4c\uff45.jsonl") == "batchdrop: file.jsonl"
    assert fit_subject("batchdrop: 日本語.jsonl done") == "batchdrop: ?.jsonl done"
    assert fit_subject("batchdrop: ring\x07ring.jsonl") == "batchdrop: ring ring.jsonl"


def test_a_long_subject_is_cut_below_the_limit_and_says_so() -> None:
    subject = fit_subject(NASTY["long ascii"])
    assert len(subject) == 99
    assert subject.endswith("...")


def random_text(rng: random.Random) -> str:
    """Strings drawn from every kind of character a key may hold, and a few it may not."""
    pools = [
        (0x00, 0x20),  # C0 controls
        (0x20, 0x7F),  # printable ASCII
        (0x7F, 0xA0),  # DEL and C1 controls
        (0xA0, 0x250),  # Latin-1 and Latin Extended
        (0x300, 0x370),  # combining marks
        (0x2000, 0x2070),  # spaces, zero-width, bidi controls, line separators
        (0x3040, 0x30FF),  # kana
        (0x4E00, 0x4F00),  # CJK
        (0xD800, 0xE000),  # lone surrogates
        (0xFB00, 0xFB07),  # ligatures
        (0xFDF0, 0xFE00),  # Arabic ligatures that decompose to many letters
        (0xFF00, 0xFF60),  # fullwidth forms
        (0x1F300, 0x1F600),  # emoji
        (0xE0000, 0xE0080),  # tags (format characters)
    ]
    length = rng.choice([0, 1, 2, 5, 20, 99, 100, 101, 150, 400])
    chars = []
    for _ in range(length):
        low, high = rng.choice(pools)
        chars.append(chr(rng.randrange(low, high)))
    return "".join(chars)


@pytest.mark.slow  # 10,000 generated subjects
def test_fit_subject_passes_sns_rules_for_thousands_of_generated_names() -> None:
    rng = random.Random(11)
    for _ in range(5_000):
        name = random_text(rng)
        for subject in (name, f"batchdrop: {name}.jsonl completed, 1/1 ok"):
            fitted = fit_subject(subject)
            assert subject_problems(fitted) == [], (subject, fitted)


class FakeSns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.published.append(kwargs)
        return {"MessageId": f"m{len(self.published)}"}


@pytest.mark.parametrize("subject", NASTY.values(), ids=NASTY.keys())
def test_the_adapter_publishes_every_nasty_subject_and_keeps_the_body(subject: str) -> None:
    sent = FakeSns()
    strict = StrictSns(sent)
    body = f"File: s3://b/requests/{subject}\n"

    SnsNotifier(strict, "arn:topic").publish(Notice(subject=subject, body=body))

    assert strict.refused == []
    (message,) = sent.published
    assert message["Message"] == body  # the real name, unchanged


@pytest.mark.parametrize("code", ["InvalidParameter", "InvalidParameterValue"])
def test_a_publish_sns_refuses_as_invalid_is_told_apart(code: str) -> None:
    class Refusing:
        def publish(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": code, "Message": "Invalid"}}, "Publish")

    with pytest.raises(NoticeRefused, match=code):
        SnsNotifier(Refusing(), "arn:topic").publish(Notice(subject="s", body="b"))


def test_other_publish_failures_stay_what_they_are() -> None:
    class Throttled:
        def publish(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "Publish")

    with pytest.raises(ClientError) as raised:
        SnsNotifier(Throttled(), "arn:topic").publish(Notice(subject="s", body="b"))
    assert not isinstance(raised.value, NoticeRefused)

"""The seam and the continuation request: pure text work, no I/O."""

import pytest

from flexiai_django.chat_types import ChatRequest, Message, ResponseFormat
from flexiai_django.continuation import Seam, build, not_continuable

ASK = ChatRequest(messages=(Message("system", "Be brief."), Message("user", "a b c d")),
                  temperature=0.2)
GO_ON = "Continue."


def stitched(sent, pieces, limit=200):
    seam = Seam(sent, limit)
    out = "".join(seam.feed(p) for p in pieces) + seam.close()
    return sent + out, seam.dropped


@pytest.mark.parametrize(("sent", "pieces", "whole", "dropped"), [
    # the fake's instruction form: the rest, repeating the partial's last word
    ("echo: a b ", ["b ", "c ", "d"], "echo: a b c d", "b "),
    ("echo: a b", ["b ", "c d"], "echo: a b c d", "b"),
    # a prefill continuation: no repeat, or only the whitespace trimmed off the prefill
    ("echo: a b", [" c", " d"], "echo: a b c d", ""),
    ("echo: a b ", [" c", " d"], "echo: a b c d", " "),
    # a longer repeat, arriving one character at a time
    ("The quick brown fox", list(" brown fox jumps"), "The quick brown fox jumps", " brown fox"),
    ("The quick brown fox", list("quick brown fox jumps"), "The quick brown fox jumps",
     "quick brown fox"),
    # a word cut in half is finished, not repeated
    ("echo: one tw", ["two three"], "echo: one two three", "tw"),
    # not a repeat: a match inside a word is no overlap
    ("I ate a", ["nd then"], "I ate and then", ""),
    ("It is fine", ["d it"], "It is fined it", ""),
    ("no overlap", ["at all"], "no overlapat all", ""),
])
def test_the_seam_drops_the_longest_repeat_at_a_word_boundary(sent, pieces, whole, dropped):
    assert stitched(sent, pieces) == (whole, dropped)


def test_the_seam_holds_text_back_only_while_a_repeat_is_still_possible():
    seam = Seam("echo: a b ")
    assert seam.feed("b") == ""  # may be "b " repeated
    assert seam.feed(" c") == "c"  # it was: "b " dropped, "c" goes out
    assert seam.feed(" d") == " d"  # decided: everything passes


def test_text_that_cannot_be_a_repeat_goes_out_at_once():
    seam = Seam("echo: a b ")
    assert seam.feed("zebra") == "zebra"
    assert seam.decided and seam.dropped == ""


def test_the_repeat_dropped_is_bounded():
    sent = "x " * 300
    whole, dropped = stitched(sent, [sent[-150:], "y"], limit=100)
    assert len(dropped) <= 100
    whole, dropped = stitched(sent, ["x " * 40, "y"], limit=100)
    assert (whole, dropped) == (sent + "y", "x " * 40)


def test_a_continuation_that_ends_while_held_back_is_sent_as_it_is():
    seam = Seam("echo: a b ")
    assert seam.feed("b") == ""
    assert seam.close() == "b"


def test_nothing_sent_yet_means_no_seam():
    assert stitched("", ["hello"]) == ("hello", "")


def test_a_prefill_is_the_text_so_far_without_trailing_whitespace():
    cont = build(ASK, "echo: a b \n", prefill=True, instruction=GO_ON)
    assert cont.request.messages == (*ASK.messages, Message("assistant", "echo: a b"))
    assert (cont.prefill, cont.trimmed) == (True, " \n")
    assert cont.request.temperature == 0.2


def test_without_prefill_the_text_so_far_is_followed_by_the_instruction():
    cont = build(ASK, "echo: a b ", prefill=False, instruction=GO_ON)
    assert cont.request.messages == (*ASK.messages, Message("assistant", "echo: a b"),
                                       Message("user", GO_ON))
    assert not cont.prefill


@pytest.mark.parametrize(("limits", "sent", "left"), [
    ({"max_tokens": 100}, "x" * 40, {"max_tokens": 90}),
    ({"max_completion_tokens": 100}, "x" * 41, {"max_completion_tokens": 90}),
    ({"max_tokens": 5}, "x" * 400, {"max_tokens": 1}),
    ({}, "x" * 40, {"max_tokens": None, "max_completion_tokens": None}),
])
def test_a_token_limit_is_lowered_by_what_the_text_so_far_used(limits, sent, left):
    request = ChatRequest(messages=ASK.messages, **limits)
    continued = build(request, sent, prefill=True, instruction=GO_ON).request
    assert {name: getattr(continued, name) for name in left} == left


def test_whitespace_so_far_is_no_start_the_request_goes_again():
    cont = build(ASK, " \n", prefill=True, instruction=GO_ON)
    assert cont.request == ASK and cont.trimmed == " \n"


@pytest.mark.parametrize(("request_", "tool_calls", "refusal", "why"), [
    (ASK, False, False, None),
    (ChatRequest(messages=ASK.messages, n=2), False, False, "n > 1"),
    (ASK, True, False, "tool call"),
    (ASK, False, True, "refusal"),
    (ChatRequest(messages=ASK.messages, response_format=ResponseFormat("json_schema", {})),
     False, False, "json_schema answer"),
    (ChatRequest(messages=ASK.messages, response_format=ResponseFormat("json_object")),
     False, False, None),
])
def test_only_a_single_text_answer_is_continued(request_, tool_calls, refusal, why):
    assert not_continuable(request_, tool_calls=tool_calls, refusal=refusal) == why

"""Upstream text loses every piece of our key, in any case, before it is cut to length."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexiai_django.redaction import MAX_INPUT, MIN_PIECE, redact

KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
keys = st.text(alphabet=KEY_ALPHABET, min_size=MIN_PIECE, max_size=80)
surroundings = st.text(max_size=400)


def pieces(key):
    """Every slice of the key long enough to matter, lower-cased."""
    low = key.lower()
    return {low[i:j] for i in range(len(low)) for j in range(i + MIN_PIECE, len(low) + 1)}


def assert_clean(output, key):
    for low in (output.lower(), output.casefold()):
        leaked = [p for p in pieces(key) if p in low]
        assert not leaked, f"{leaked[:3]} leaked in {output!r}"


@pytest.mark.parametrize("text", [
    "here: \u017fk-live-qwertyuiop",     # long s: folds to s
    "\u212aey-abcdei",                    # Kelvin sign: folds to k
    "x abcde\u0130 y",                    # dotted capital I: lower() gives i + a dot
    "x ke\u00dfabcd y",                   # sharp s: casefold() gives ss
])
def test_lookalike_letters_count_as_the_letters_they_fold_to(text):
    key = "sk-live-QWERTYUIOP-key-abcdei-kessabcd"
    assert_clean(redact(text, [key]), key)


@st.composite
def insertions(draw):
    """(key, text, limit): the key whole, re-cased or in part, anywhere, maybe at the cut."""
    key = draw(keys)
    start = draw(st.integers(0, len(key) - MIN_PIECE))
    end = draw(st.integers(start + MIN_PIECE, len(key)))
    piece = draw(st.sampled_from([key, key.upper(), key.lower(), key.swapcase(),
                                  key[start:end], key[start:end].upper()]))
    before, after = draw(surroundings), draw(surroundings)
    limit = draw(st.one_of(st.integers(10, 500),
                           # the cut falls inside the inserted key
                           st.integers(0, len(piece)).map(lambda k: len(before) + k)))
    return key, before + piece + after, max(1, limit)


@given(insertions())
@settings(max_examples=400, deadline=None)
def test_no_piece_of_the_key_survives(case):
    key, text, limit = case
    output = redact(text, [key], limit=limit)
    assert_clean(output, key)
    assert len(output) <= limit


@given(keys, st.lists(st.tuples(surroundings, st.booleans()), min_size=1, max_size=5))
@settings(max_examples=200, deadline=None)
def test_many_pieces_in_many_cases(key, chunks):
    text = "".join(s + (key[len(key) // 3:] if upper else key[: -1]).swapcase()
                   for s, upper in chunks)
    assert_clean(redact(text, [key], limit=10_000), key)


@given(keys, st.text(alphabet=KEY_ALPHABET + "\u0130\u0131\u00df\u017f\u212a *.…", max_size=300),
       st.integers(0, 300), st.integers(5, 400))
@settings(max_examples=300, deadline=None)
def test_key_like_surroundings_and_lookalike_letters(key, noise, at, limit):
    """Surroundings made of key characters and letters that fold into them."""
    text = noise[:at] + key.swapcase() + noise[at:]
    assert_clean(redact(text, [key], limit=limit), key)


def test_the_truncation_boundary_no_longer_leaks_half_a_key():
    key = "sk-live-ABCDEFGHIJKLMNOPQRSTUVWX"
    text = "x" * 290 + key
    output = redact(text, [key], limit=300)
    assert "ABCDEFGH" not in output and "sk-live" not in output


def test_openai_masked_key_forms_are_removed():
    message = ("Incorrect API key provided: sk-proj-********************abcd. You can find "
               "your API key at https://platform.openai.com/account/api-keys.")
    output = redact(message, ["sk-proj-QWERTYUIOPasdfghjkl1234567890abcd"])
    assert "abcd" not in output and "sk-proj" not in output
    assert output.startswith("Incorrect API key provided: ***")
    assert "platform.openai.com" in output
    assert "****wxyz" not in redact("key sk-...****wxyz is wrong")


def test_secret_looking_tokens_go_even_when_the_key_is_unknown():
    text = ("auth Bearer abc.def.ghi failed; sk-ant-api03-xyzxyzxyz; id "
            "0123456789abcdef0123456789abcdef; blob Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MA== end")
    output = redact(text)
    for secret in ("abc.def.ghi", "sk-ant", "0123456789abcdef0123", "Zm9vYmFy"):
        assert secret not in output
    assert output.startswith("auth ") and output.endswith(" end")


def test_ordinary_error_text_is_kept():
    message = ("max_tokens is too large: 9000. This model supports at most 4096 completion "
               "tokens (model claude-3-5-sonnet-20241022).")
    assert redact(message) == message


def test_output_is_one_line_and_cut_with_an_ellipsis():
    output = redact("line one\nline two\t" + "word " * 200, limit=50)
    assert "\n" not in output and len(output) == 50 and output.endswith("…")


def test_hostile_input_is_read_only_up_to_a_bound():
    for text in ("a" * 1_000_000, "*" * 100_000, ("ab" * 50 + "*") * 5000, "f" * 100_000 + "g"):
        assert len(redact(text, ["sk-" + "a" * 60], limit=100_000)) <= MAX_INPUT

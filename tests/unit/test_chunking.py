"""Chunking settings are validated as Elasticsearch does; chunks are exact character offsets."""
from __future__ import annotations

import dataclasses
import random

import pytest

from mlcommons.elasticsearch.chunking import (
    DEFAULT_CHUNKING_SETTINGS,
    LEGACY_CHUNKING_SETTINGS,
    ChunkingSettings,
    ChunkingStrategy,
    chunk,
    parse_chunking_settings,
    sentence_spans,
    word_spans,
)
from mlcommons.errors import BadRequest

S = ChunkingStrategy


def word(max_chunk_size: int, overlap: int) -> ChunkingSettings:
    return ChunkingSettings(S.WORD, max_chunk_size=max_chunk_size, overlap=overlap)


def sentence(max_chunk_size: int, sentence_overlap: int = 1) -> ChunkingSettings:
    return ChunkingSettings(S.SENTENCE, max_chunk_size=max_chunk_size, sentence_overlap=sentence_overlap)


def words_of(text: str, span: tuple[int, int]) -> list[str]:
    start, end = span
    return [text[s:e] for s, e in word_spans(text) if start <= s and e <= end]


def check_invariants(text: str, chunks: list[tuple[int, int]], max_words: int | None) -> None:
    """What chunk() promises for any text and settings."""
    assert chunks and chunks[0][0] == 0 and chunks[-1][1] == len(text)
    for (s1, e1), (s2, e2) in zip(chunks, chunks[1:]):
        assert s1 <= s2 and e1 < e2 and s2 <= e1  # in order, and no gap between chunks
    spans = word_spans(text)
    for start, end in chunks:
        assert 0 <= start <= end <= len(text)
        assert not any(s < start < e or s < end < e for s, e in spans)  # no word is cut
        inside = text[start:end]  # the chunk alone yields the same words: nothing cut at its edges
        assert [inside[s:e] for s, e in word_spans(inside)] == words_of(text, (start, end))
        if max_words is not None:
            assert len(words_of(text, (start, end))) <= max_words
    for s, e in spans:
        assert any(start <= s and e <= end for start, end in chunks)


# --- settings --------------------------------------------------------------------------------


def test_absent_settings_are_none_and_empty_means_sentence_250_1():
    assert parse_chunking_settings(None) is None
    assert parse_chunking_settings({}) == DEFAULT_CHUNKING_SETTINGS == sentence(250, 1)
    assert DEFAULT_CHUNKING_SETTINGS.to_dict() == {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}
    assert LEGACY_CHUNKING_SETTINGS.to_dict() == {"strategy": "word", "max_chunk_size": 250, "overlap": 100}


def test_valid_settings_and_their_echo():
    got = parse_chunking_settings({"strategy": "word", "max_chunk_size": 100, "overlap": 50})
    assert got == word(100, 50)
    assert got.to_dict() == {"strategy": "word", "max_chunk_size": 100, "overlap": 50}
    got = parse_chunking_settings({"strategy": "sentence", "max_chunk_size": 20})
    assert got == sentence(20, 1)  # sentence_overlap defaults to 1
    assert parse_chunking_settings({"strategy": "sentence", "max_chunk_size": 300, "sentence_overlap": 0}) \
        .to_dict() == {"strategy": "sentence", "max_chunk_size": 300, "sentence_overlap": 0}
    assert parse_chunking_settings({"strategy": "sentence", "max_chunk_size": 20, "sentence_overlap": None}) \
        == sentence(20, 1)
    got = parse_chunking_settings({"strategy": "none"})
    assert got == ChunkingSettings(S.NONE) and got.to_dict() == {"strategy": "none"}
    assert parse_chunking_settings({"strategy": "word", "max_chunk_size": 10, "overlap": 5}) == word(10, 5)
    assert parse_chunking_settings({"strategy": "word", "max_chunk_size": 15, "overlap": 7}) == word(15, 7)


def test_settings_are_frozen_and_the_request_is_untouched():
    raw = {"strategy": "word", "max_chunk_size": 100, "overlap": 10}
    settings = parse_chunking_settings(raw)
    assert raw == {"strategy": "word", "max_chunk_size": 100, "overlap": 10}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.overlap = 20
    assert settings.strategy == "word"  # a str Enum compares as its wire value


def failed(*errors: str) -> str:
    return "Validation Failed: " + "".join(f"{i}: {e};" for i, e in enumerate(errors, 1))


@pytest.mark.parametrize("raw, reason", [
    ({"strategy": "word", "max_chunk_size": 5, "overlap": 1},
     failed("[chunking_settings] Invalid value [5.0]. [max_chunk_size] must be a greater than or equal to [10.0]")),
    ({"strategy": "word", "max_chunk_size": 301, "overlap": 1},
     failed("[chunking_settings] Invalid value [301.0]. [max_chunk_size] must be a less than or equal to [300.0]")),
    ({"strategy": "word", "max_chunk_size": 100},
     failed("[chunking_settings] does not contain the required setting [overlap]")),
    ({"strategy": "word", "overlap": 5},
     failed("[chunking_settings] does not contain the required setting [max_chunk_size]")),
    ({"strategy": "word", "max_chunk_size": 100, "overlap": 51},
     failed("[chunking_settings] Invalid value [51.0]. [overlap] must be a less than or equal to [50.0]")),
    ({"strategy": "word", "max_chunk_size": 15, "overlap": 8},
     failed("[chunking_settings] Invalid value [8.0]. [overlap] must be a less than or equal to [7.0]")),
    ({"strategy": "word", "max_chunk_size": 100, "overlap": 0},
     failed("[chunking_settings] Invalid value [0]. [overlap] must be a positive integer")),
    ({"strategy": "word", "max_chunk_size": -3, "overlap": 1},
     failed("[chunking_settings] Invalid value [-3]. [max_chunk_size] must be a positive integer")),
    ({"strategy": "word", "max_chunk_size": 100, "overlap": 10, "sentence_overlap": 1},
     failed("Word based chunking settings can not have the following settings: [sentence_overlap]")),
    # an invalid size means the overlap is not looked at
    ({"strategy": "word", "max_chunk_size": 9, "overlap": 99, "x": 1, "y": 2},
     failed("Word based chunking settings can not have the following settings: [x, y]",
            "[chunking_settings] Invalid value [9.0]. [max_chunk_size] must be a greater than or equal to [10.0]")),
    ({"strategy": "sentence", "max_chunk_size": 19},
     failed("[chunking_settings] Invalid value [19.0]. [max_chunk_size] must be a greater than or equal to [20.0]")),
    ({"strategy": "sentence", "max_chunk_size": 10_000_000},
     failed("[chunking_settings] Invalid value [1.0E7]. [max_chunk_size] must be a less than or equal to [300.0]")),
    ({"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 2},
     failed("sentence_overlap[2] must be either 0 or 1")),
    ({"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": -1},
     failed("sentence_overlap[-1] must be either 0 or 1")),
    ({"strategy": "sentence"},
     failed("[chunking_settings] does not contain the required setting [max_chunk_size]")),
    ({"strategy": "sentence", "max_chunk_size": 250, "overlap": 10},
     failed("Sentence based chunking settings can not have the following settings: [overlap]")),
    ({"strategy": "sentence", "foo": 1, "max_chunk_size": 10, "sentence_overlap": 3},
     failed("Sentence based chunking settings can not have the following settings: [foo]",
            "[chunking_settings] Invalid value [10.0]. [max_chunk_size] must be a greater than or equal to [20.0]",
            "sentence_overlap[3] must be either 0 or 1")),
    ({"strategy": "none", "max_chunk_size": 100},
     failed("When chunking is disabled (none), settings can not have the following: [max_chunk_size]")),
])
def test_validation_messages_are_elasticsearchs(raw, reason):
    with pytest.raises(BadRequest) as caught:
        parse_chunking_settings(raw)
    assert caught.value.reason == reason
    assert (caught.value.status, caught.value.error_type) == (400, "validation_exception")


@pytest.mark.parametrize("value, shown", [
    ("100", "100"), (12.5, "12.5"), (100.0, "100.0"), (True, "true"), ([1, 2], "[1, 2]"), (2**31, str(2**31)),
])
def test_a_value_of_the_wrong_type(value, shown):
    with pytest.raises(BadRequest) as caught:
        parse_chunking_settings({"strategy": "word", "max_chunk_size": value, "overlap": 1})
    assert caught.value.reason == failed(
        f"field [max_chunk_size] is not of the expected type. The value [{shown}] cannot be converted to a [Integer]")
    with pytest.raises(BadRequest) as caught:
        parse_chunking_settings({"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": value})
    assert caught.value.reason == failed(
        f"field [sentence_overlap] is not of the expected type. The value [{shown}] cannot be converted to a [Integer]")


@pytest.mark.parametrize("raw, reason", [
    ({"max_chunk_size": 100}, "Can't generate Chunker without ChunkingStrategy provided"),
    ({"strategy": None, "max_chunk_size": 100}, "Can't generate Chunker without ChunkingStrategy provided"),
    ({"strategy": "paragraph"}, "Invalid chunkingStrategy paragraph"),
    ({"strategy": "Word", "max_chunk_size": 100, "overlap": 10}, "Invalid chunkingStrategy Word"),
])
def test_a_missing_or_unknown_strategy_is_an_illegal_argument(raw, reason):
    with pytest.raises(BadRequest) as caught:
        parse_chunking_settings(raw)
    assert (caught.value.reason, caught.value.error_type, caught.value.status) == \
        (reason, "illegal_argument_exception", 400)


def test_recursive_is_refused_clearly():
    with pytest.raises(BadRequest) as caught:
        parse_chunking_settings({"strategy": "recursive", "max_chunk_size": 100})
    assert caught.value.error_type == "validation_exception"
    assert "[recursive] is not supported" in caught.value.reason


def test_settings_must_be_an_object():
    with pytest.raises(BadRequest):
        parse_chunking_settings("sentence")  # type: ignore[arg-type]


# --- words and sentences ---------------------------------------------------------------------


def test_words():
    text = "Don't stop: 3.14 is e.g. pi, well-known_thing!"
    assert [text[s:e] for s, e in word_spans(text)] == ["Don't", "stop", "3.14", "is", "e.g", "pi", "well",
                                                        "known_thing"]
    assert word_spans("") == [] and word_spans(" \n\t ") == []


def test_unicode_words():
    nfd_cafe = "cafe\u0301s"  # é as e + a combining accent
    text = f"Ünïcödé naïve {nfd_cafe} Привет мир Γειά σου हिन्दी 日本語です 🙂 ok"
    got = [text[s:e] for s, e in word_spans(text)]
    assert got[:8] == ["Ünïcödé", "naïve", nfd_cafe, "Привет", "мир", "Γειά", "σου", "हिन्दी"]
    assert got[8:] == ["日", "本", "語", "で", "す", "ok"]  # one word per ideograph or kana; no emoji


@pytest.mark.parametrize("text, sentences", [
    ("One two. Three four! Five six? Seven", ["One two. ", "Three four! ", "Five six? ", "Seven"]),
    ("Dr. Smith met Mrs. Jones at St. Paul. They talked.", ["Dr. Smith met Mrs. Jones at St. Paul. ", "They talked."]),
    ("Use tools, e.g. hammers. Or i.e. nails.", ["Use tools, e.g. hammers. ", "Or i.e. nails."]),
    ("It was J. R. Tolkien. I read it. So did I. Then I slept.",
     ["It was J. R. Tolkien. ", "I read it. ", "So did I. ", "Then I slept."]),
    ("Pi is 3.14 roughly. 42 is the answer.", ["Pi is 3.14 roughly. ", "42 is the answer."]),
    ('He said "stop." "Why?" she asked. (Nobody knew.) Fine.',
     ['He said "stop." ', '"Why?" she asked. ', "(Nobody knew.) ", "Fine."]),
    ("no capital. after this one", ["no capital. after this one"]),
    ("Wait... What? Really…  Yes.", ["Wait... ", "What? ", "Really…  ", "Yes."]),
    ("para one\n\npara two\nsame para", ["para one\n\n", "para two\nsame para"]),
    ("lower end.\n\nlower start", ["lower end.\n\n", "lower start"]),
    ("  leading space. Then more.  ", ["  leading space. ", "Then more.  "]),
    ("これは文です。次の文！最後？", ["これは文です。", "次の文！", "最後？"]),
    ("Привет. Как дела? Хорошо.", ["Привет. ", "Как дела? ", "Хорошо."]),
    ("", [""]),
])
def test_sentences_tile_the_text(text, sentences):
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == sentences
    assert "".join(text[s:e] for s, e in spans) == text


# --- chunkers --------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [word(10, 5), sentence(20, 1), sentence(20, 0), ChunkingSettings(S.NONE)])
@pytest.mark.parametrize("text", ["", " ", "\n\t  \n", "!!! ... ???"])
def test_text_without_words_is_one_chunk(settings, text):
    assert chunk(text, settings) == [(0, len(text))]


def test_none_is_the_whole_text():
    text = " ".join(["word"] * 1000)
    assert chunk(text, ChunkingSettings(S.NONE)) == [(0, len(text))]


def test_short_text_is_one_chunk():
    text = "  Just a few words here.  "
    assert chunk(text, word(10, 5)) == [(0, len(text))]
    assert chunk(text, sentence(20)) == [(0, len(text))]


def test_word_windows_advance_by_size_minus_overlap():
    names = [f"w{i}" for i in range(100)]
    text = "  " + " ".join(names) + ".  "
    chunks = chunk(text, word(10, 3))
    starts = list(range(0, 92, 7))  # 0, 7, ..., 91: the window at 91 reaches the end, so it is the last
    assert [words_of(text, c) for c in chunks] == [names[i:i + 10] for i in starts]
    check_invariants(text, chunks, 10)
    for a, b in zip(chunks, chunks[1:]):  # neighbours share exactly the overlap
        assert words_of(text, a)[-3:] == words_of(text, b)[:3]
    assert chunks[0] == (0, text.index("w9") + 2)  # the leading blank goes with the first chunk
    assert chunks[1] == (text.index("w6") + 2, text.index("w16") + 3)  # starts right after w6
    assert text[chunks[-1][0]:].endswith("w99.  ")  # the last chunk runs to the end


def test_word_windows_without_overlap_tile_the_text():
    text = " ".join(f"w{i}" for i in range(35)) + "\n"
    chunks = chunk(text, word(10, 0))  # overlap 0 is refused by validation, but the chunker copes
    assert "".join(text[s:e] for s, e in chunks) == text
    assert [len(words_of(text, c)) for c in chunks] == [10, 10, 10, 5]


def test_an_exact_multiple_leaves_no_stub_chunk():
    names = [f"w{i}" for i in range(20)]
    text = " ".join(names)
    assert [words_of(text, c) for c in chunk(text, word(10, 5))] == [names[0:10], names[5:15], names[10:20]]


def make_sentences(count: int, length: int, tag: str = "S") -> list[str]:
    return [" ".join(f"{tag}{i}w{j}" for j in range(length - 1)) + f" {tag}{i}end." for i in range(count)]


def test_sentences_are_packed_whole():
    sentences = make_sentences(7, 8)
    text = " ".join(sentences)
    chunks = chunk(text, sentence(20, 0))
    assert "".join(text[s:e] for s, e in chunks) == text  # no overlap: the chunks tile the text
    assert [text[s:e].strip() for s, e in chunks] == [
        " ".join(sentences[0:2]), " ".join(sentences[2:4]), " ".join(sentences[4:6]), sentences[6]]
    check_invariants(text, chunks, 20)


def test_sentence_overlap_repeats_the_previous_sentence():
    sentences = make_sentences(7, 8)
    text = " ".join(sentences)
    chunks = chunk(text, sentence(30, 1))  # 8-word sentences fit within the cap of min(15, 20)
    check_invariants(text, chunks, 30)
    assert text[chunks[0][0]:chunks[0][1]].strip() == " ".join(sentences[0:3])
    assert text[chunks[1][0]:chunks[1][1]].strip() == " ".join(sentences[2:5])
    assert text[chunks[2][0]:chunks[2][1]].strip() == " ".join(sentences[4:7])
    for a, b in zip(chunks, chunks[1:]):
        last_sentence = sentence_spans(text[a[0]:a[1]])[-1]
        assert text[b[0]:].startswith(text[a[0]:a[1]][last_sentence[0]:last_sentence[1]])


def test_sentence_overlap_is_capped_at_20_words():
    sentences = make_sentences(4, 25)
    text = " ".join(sentences)
    chunks = chunk(text, sentence(60, 1))  # cap min(30, 20) = 20
    got = [words_of(text, c) for c in chunks]
    s = [x.rstrip(".").split() for x in sentences]
    assert got == [s[0] + s[1], s[1][-20:] + s[2], s[2][-20:] + s[3]]
    check_invariants(text, chunks, 60)
    assert text[chunks[1][0]:].startswith(" S1w5 ")  # begins right after the last skipped word


def test_sentence_overlap_shrinks_so_the_next_sentence_fits():
    sentences = make_sentences(3, 12)
    text = " ".join(sentences)
    chunks = chunk(text, sentence(20, 1))  # cap 10, but only 20 - 12 = 8 words of room
    s = [x.rstrip(".").split() for x in sentences]
    assert [words_of(text, c) for c in chunks] == [s[0], s[0][-8:] + s[1], s[1][-8:] + s[2]]
    check_invariants(text, chunks, 20)


def test_a_long_sentence_is_split_by_words():
    long = make_sentences(1, 50, "L")[0]
    names = long.rstrip(".").split()
    chunks = chunk(long, sentence(20, 0))  # overlap within the sentence: min(20, 19 // 2) = 9
    assert [words_of(long, c) for c in chunks] == [names[0:20], names[11:31], names[22:42], names[33:50]]
    check_invariants(long, chunks, 20)


def test_sentences_after_a_long_one_join_its_last_piece():
    short = make_sentences(2, 3)
    long = make_sentences(1, 35, "L")[0]
    text = f"{short[0]} {long} {short[1]}"
    chunks = chunk(text, sentence(20, 0))
    s0, s1, lw = short[0].rstrip(".").split(), short[1].rstrip(".").split(), long.rstrip(".").split()
    # s0 does not fit with the long sentence, which splits into [0:20], [11:31], [22:35]; s1 joins the last
    assert [words_of(text, c) for c in chunks] == [s0, lw[0:20], lw[11:31], lw[22:35] + s1]
    check_invariants(text, chunks, 20)
    assert "".join(text[s:e] for s, e in chunks[:2]) == text[:chunks[1][1]]


def test_a_long_sentence_keeps_the_overlap_before_it():
    short = make_sentences(1, 5)[0]
    long = make_sentences(1, 40, "L")[0]
    text = f"{short} {long}"
    chunks = chunk(text, sentence(20, 1))
    s0, lw = short.rstrip(".").split(), long.rstrip(".").split()
    joined = s0 + lw  # the whole short sentence (5 <= cap 10) leads the split
    assert [words_of(text, c) for c in chunks] == [s0, joined[0:20], joined[11:31], joined[22:42], joined[33:45]]
    check_invariants(text, chunks, 20)


def test_unicode_offsets_are_exact():
    text = ("Ünïcödé naïve café. Привет мир, как дела? Γειά σου κόσμε! हिन्दी में एक वाक्य। "
            "日本語の文です。🙂 Emoji 🎉 end. " * 20)
    for settings in (word(10, 5), sentence(20, 1), sentence(20, 0), word(300, 150)):
        chunks = chunk(text, settings)
        check_invariants(text, chunks, settings.max_chunk_size)
        assert all(text[s:e] for s, e in chunks)
    assert "".join(text[s:e] for s, e in chunk(text, sentence(20, 0))) == text


def test_random_texts_keep_every_promise():
    rng = random.Random(7)
    vocabulary = ["alpha", "Beta", "gamma", "Dr.", "e.g.", "3.14", "don't", "naïve", "日本", "—", "!!", ""]
    enders = [".", "!", "?", ",", "", "\n\n", "…"]
    for _ in range(200):
        parts = []
        for _ in range(rng.randint(0, 400)):
            parts.append(rng.choice(vocabulary) + rng.choice(enders if rng.random() < 0.15 else [""]))
        text = rng.choice(["", " ", "\n"]) + " ".join(parts) + rng.choice(["", " ", "\n"])
        size = rng.randint(20, 60)
        for settings in (word(size, rng.randint(1, size // 2)), sentence(size, 1), sentence(size, 0)):
            check_invariants(text, chunk(text, settings), size)

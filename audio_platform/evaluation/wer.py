"""Word error rate with a text normalization that makes Whisper output comparable to corpus references.

Normalization choices (applied identically to reference and hypothesis):

* Unicode NFKC, lower case.
* Numbers written with digits become English words, so ``"6"`` and ``"SIX"`` match:
  ``"1,234"`` / ``"1234"`` -> cardinal words (``"one thousand two hundred thirty four"``), except
  comma-free four-digit numbers from 1100 to 1999, which are read as years (``"1964"`` ->
  ``"nineteen sixty four"``, ``"1905"`` -> ``"nineteen oh five"``, ``"1900"`` -> ``"nineteen
  hundred"``), the way speech (and LJSpeech's normalized text) says them. ``"3.5"`` -> ``"three
  point five"``, ``"21st"`` -> ``"twenty first"``, ``"5%"`` -> ``"five percent"``, ``"$5"`` ->
  ``"five dollars"``. Numbers with leading zeros (``"007"``) are read digit by digit.
* ``"and"`` between ``hundred``/``thousand``/... and a following number word is dropped, so the
  British reading ``"eight hundred and twenty three"`` equals ``"823"``.
* Apostrophes are removed (``"don't"`` -> ``"dont"``); every other non-alphanumeric character
  becomes a space, so hyphenated or dotted spellings (``"forty-five"``, ``"P-I-T-T"``,
  ``"U.S."``) split into words.
* The title abbreviations ``mr``/``mrs`` are spelled out (``mister``/``missus``).

Reading numbers back from words is not attempted: it is ambiguous (``"four seventy one"``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_NUMBER_WORDS = frozenset([*_ONES, *_TENS[2:], "hundred", *(name for _, name in _SCALES)])
_SCALE_WORDS = frozenset(["hundred", *(name for _, name in _SCALES)])
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus"}

# One number token: optional currency, digits with optional thousands commas, optional decimals,
# optional ordinal suffix or percent sign.
_NUMBER_RE = re.compile(
    r"(?P<cur>\$)?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<dec>\d+))?(?P<suf>(?:st|nd|rd|th)(?!\w)|%)?"
)
_APOSTROPHES_RE = re.compile(r"['’`]")
_NON_WORD_RE = re.compile(r"[\W_]+")


def cardinal_words(n: int) -> str:
    """A non-negative integer in English words: 823 -> "eight hundred twenty three"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + cardinal_words(rest))
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return cardinal_words(head) + " " + name + ("" if rest == 0 else " " + cardinal_words(rest))
    raise AssertionError("unreachable: every n >= 1000 has a scale")


def _year(n: int) -> str:
    century, rest = divmod(n, 100)
    if rest == 0:
        return cardinal_words(century) + " hundred"
    if rest < 10:
        return cardinal_words(century) + " oh " + _ONES[rest]
    return cardinal_words(century) + " " + cardinal_words(rest)


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}" if head else last


def _digits(text: str) -> str:
    return " ".join(_ONES[int(d)] for d in text)


def _number_to_words(match: re.Match[str]) -> str:
    raw_int = match["int"]
    digits = raw_int.replace(",", "")
    if (len(digits) > 1 and digits.startswith("0")) or len(digits) > 15:
        words = _digits(digits)
    elif "," not in raw_int and len(digits) == 4 and 1100 <= int(digits) <= 1999 and not match["dec"]:
        words = _year(int(digits))
    else:
        words = cardinal_words(int(digits))
    if match["dec"]:
        words += " point " + _digits(match["dec"])
    suffix = match["suf"]
    if suffix == "%":
        words += " percent"
    elif suffix:
        words = _ordinal(words)
    if match["cur"]:
        words += " dollars"
    # Spaces around the expansion keep "5kg" or "b12" from gluing to neighbouring letters.
    return f" {words} "


def normalize_text(text: str) -> str:
    """Canonical lower-case word string for WER scoring (rules in the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _NUMBER_RE.sub(_number_to_words, text)
    text = _APOSTROPHES_RE.sub("", text)
    words = [_ABBREVIATIONS.get(w, w) for w in _NON_WORD_RE.sub(" ", text).split()]
    kept = [
        word
        for i, word in enumerate(words)
        if not (
            word == "and" and 0 < i < len(words) - 1 and words[i - 1] in _SCALE_WORDS and words[i + 1] in _NUMBER_WORDS
        )
    ]
    return " ".join(kept)


@dataclass(frozen=True)
class WerResult:
    """Edit counts of a hypothesis against a reference (or pooled over many pairs).

    ``wer`` is ``errors / reference_words``; with an empty reference it is 0.0 when the
    hypothesis is empty too and ``inf`` otherwise (any output is infinitely wrong there).
    """

    errors: int
    reference_words: int
    wer: float
    substitutions: int
    deletions: int
    insertions: int

    @classmethod
    def from_counts(cls, substitutions: int, deletions: int, insertions: int, reference_words: int) -> WerResult:
        errors = substitutions + deletions + insertions
        wer = errors / reference_words if reference_words else (math.inf if errors else 0.0)
        return cls(errors, reference_words, wer, substitutions, deletions, insertions)


def _edit_counts(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of one minimum-edit alignment."""
    # Each DP cell holds (total, subs, dels, ins); tuples compare by total first, so the minimum
    # also picks a deterministic split of the errors among the three kinds.
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, ref_word in enumerate(ref, start=1):
        cur = [(i, 0, i, 0)]
        for j, hyp_word in enumerate(hyp, start=1):
            t, s, d, n = prev[j - 1]
            diag = (t, s, d, n) if ref_word == hyp_word else (t + 1, s + 1, d, n)
            t, s, d, n = prev[j]
            up = (t + 1, s, d + 1, n)
            t, s, d, n = cur[j - 1]
            left = (t + 1, s, d, n + 1)
            cur.append(min(diag, up, left))
        prev = cur
    _, subs, dels, ins = prev[-1]
    return subs, dels, ins


def word_error_rate(reference: str, hypothesis: str) -> WerResult:
    """Levenshtein word errors of ``hypothesis`` against ``reference`` after ``normalize_text``."""
    ref = normalize_text(reference).split()
    hyp = normalize_text(hypothesis).split()
    return WerResult.from_counts(*_edit_counts(ref, hyp), reference_words=len(ref))


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> WerResult:
    """Pooled WER over (reference, hypothesis) pairs: total errors / total reference words."""
    subs = dels = ins = ref_words = 0
    for reference, hypothesis in pairs:
        one = word_error_rate(reference, hypothesis)
        subs += one.substitutions
        dels += one.deletions
        ins += one.insertions
        ref_words += one.reference_words
    return WerResult.from_counts(subs, dels, ins, ref_words)

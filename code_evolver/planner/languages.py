"""Language names the rules planner accepts in ``translate it to ...`` (and their aliases)."""

from __future__ import annotations

import re

_NAMES = """
afrikaans albanian amharic arabic armenian azerbaijani basque belarusian bengali bosnian
breton bulgarian burmese cantonese catalan cebuano chinese corsican croatian czech danish dutch
english esperanto estonian faroese filipino finnish french frisian galician georgian german
greek gujarati haitian hausa hawaiian hebrew hindi hmong hungarian icelandic igbo indonesian
irish italian japanese javanese kannada kazakh khmer kinyarwanda korean kurdish kyrgyz lao
latin latvian lithuanian luxembourgish macedonian malagasy malay malayalam maltese mandarin
maori marathi mongolian nepali norwegian occitan pashto persian polish portuguese punjabi
quechua romanian russian samoan scots serbian shona sindhi sinhala slovak slovenian somali
spanish sundanese swahili swedish tagalog tajik tamil tatar telugu thai tibetan tigrinya
turkish turkmen ukrainian urdu uyghur uzbek vietnamese welsh xhosa yiddish yoruba zulu
"""
LANGUAGES = frozenset(_NAMES.split())
_ALIASES = {
    "farsi": "persian",
    "brazilian portuguese": "portuguese (brazil)",
    "simplified chinese": "chinese (simplified)",
    "traditional chinese": "chinese (traditional)",
    "castilian": "spanish",
    "flemish": "dutch",
    "scottish gaelic": "scottish gaelic",
    "gaelic": "scottish gaelic",
    "klingon": "",
}
# Language names as French, Spanish, German, Italian and Portuguese requests write them.
_FOREIGN = {
    "english": "anglais inglés ingles inglese inglês englisch englische englischen engels",
    "french": "français francais francés frances francese francês französisch französische "
    "französischen frans",
    "spanish": "espagnol español espanol spagnolo espanhol spanisch spanische spanischen spaans",
    "german": "allemand alemán aleman tedesco alemão deutsch deutsche deutschen duits",
    "italian": "italien italiano italienisch italienische italienischen italiaans",
    "portuguese": "portugais portugués portugues portoghese português portugiesisch portugiesische "
    "portugees portugese portugeuse portguese",
    "japanese": "japonais japonés japones giapponese japonês japanisch japanische",
    "chinese": "chinois chino cinese chinês chinesisch chinesische",
    "russian": "russe ruso russo russisch russische",
    "dutch": "néerlandais neerlandés olandese holandês niederländisch niederländische nederlands",
}
_ALIASES.update({word: name for name, words in _FOREIGN.items() for word in words.split()})


_COMMON = [
    *("english", "french", "spanish", "german", "italian", "portuguese", "dutch"),
    *("japanese", "chinese", "korean", "russian", "arabic", "swedish", "turkish"),
]
"""The languages a typo is read as (``spansih``, ``germna``, ``frnech``): the ones people ask
for most, so that a rare word is not mistaken for a rare language."""


def canonical(name: str) -> str | None:
    """``french`` -> ``French``; ``None`` for anything that is not a language we know."""
    key = " ".join(name.lower().split())
    if key in _ALIASES:
        alias = _ALIASES[key]
        return alias.title() if alias else None
    if key in LANGUAGES:
        return key.title()
    typo = _misspelled(key)
    return typo.title() if typo else None


def _misspelled(word: str) -> str | None:
    """The common language ``word`` misspells by one letter (swapped, missing, extra or wrong),
    for words of six letters or more that are not the start of it (``russia``, ``italia``)."""
    if len(word) < 6 or not word.isalpha():
        return None
    for language in _COMMON:
        if not language.startswith(word) and _one_edit(word, language):
            return language
    return None


def _one_edit(a: str, b: str) -> bool:
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        swapped = len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
        return len(diff) == 1 or (swapped and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def find_languages(text: str) -> list[str]:
    """Every language named in ``text``, in order, once each (``in French and German``)."""
    found: list[str] = []
    for word in re.findall(r"[^\W\d_]+", text.lower()):
        language = canonical(word)
        if language is not None and language not in found:
            found.append(language)
    return found


def parse_languages(text: str) -> list[str] | None:
    """``French, Spanish, and German`` -> [French, Spanish, German]; None unless all are known."""
    items = re.split(r"\s*,\s*(?:and\s+|&\s*)?|\s+(?:and|&|as well as)\s+", text.strip(" ."))
    languages: list[str] = []
    for item in items:
        item = re.sub(r"^(?:both|also)\s+", "", item.strip())
        if not item:
            continue
        language = canonical(item)
        if language is None:
            return None
        if language not in languages:
            languages.append(language)
    return languages or None

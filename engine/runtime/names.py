"""docker-style random container names: ``<adjective>_<scientist>``."""

from __future__ import annotations

import random
from collections.abc import Container

ADJECTIVES = (
    "admiring", "agitated", "amazing", "awesome", "blissful", "bold", "brave", "busy", "charming", "clever",
    "compassionate", "confident", "cool", "dazzling", "determined", "eager", "ecstatic", "elastic",
    "elated", "elegant", "epic", "fervent", "festive", "focused", "friendly", "gallant", "gifted",
    "goofy", "gracious", "happy", "hardcore", "heuristic", "hopeful", "hungry", "infallible", "inspiring",
    "jolly", "jovial", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest", "musing",
    "nervous", "nice", "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pensive", "practical",
    "priceless", "quirky", "quizzical", "relaxed", "reverent", "romantic", "serene", "sharp", "silly",
    "sleepy", "stoic", "strange", "sweet", "tender", "thirsty", "trusting", "upbeat", "vibrant",
    "vigilant", "vigorous", "wizardly", "wonderful", "youthful", "zealous", "zen",
)

_rng = random.SystemRandom()  # names need no cryptography; SystemRandom avoids a shared seed

SCIENTISTS = (
    "agnesi", "albattani", "allen", "archimedes", "babbage", "bardeen", "bell", "bhabha", "bohr", "booth",
    "borg", "bose", "brahmagupta", "brattain", "cannon", "carson", "cerf", "chandrasekhar", "curie",
    "darwin", "dijkstra", "easley", "einstein", "euclid", "euler", "faraday", "fermat", "fermi", "feynman",
    "franklin", "galileo", "gauss", "goldberg", "goodall", "hamilton", "hawking", "heisenberg", "hertz",
    "hodgkin", "hopper", "hypatia", "johnson", "joliot", "kalam", "kepler", "knuth", "lamarr", "lovelace",
    "maxwell", "mayer", "mcclintock", "meitner", "mendel", "mirzakhani", "montalcini", "morse", "newton",
    "nobel", "noether", "pascal", "pasteur", "payne", "perlman", "poincare", "ramanujan", "ritchie",
    "rosalind", "sammet", "shannon", "shockley", "sinoussi", "swartz", "tesla", "thompson", "torvalds",
    "turing", "volhard", "wiles", "williams", "wozniak", "wright", "yalow", "yonath",
)


def random_name(taken: Container[str] = (), attempts: int = 20) -> str:
    """A free ``adjective_surname``; after ``attempts`` collisions a numeric suffix is added."""
    name = ""
    for attempt in range(attempts + 1):
        name = f"{_rng.choice(ADJECTIVES)}_{_rng.choice(SCIENTISTS)}"
        if attempt == attempts:
            name += str(_rng.randrange(1000))
        if name not in taken:
            return name
    return name

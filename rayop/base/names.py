"""Random name suffixes, drawn as the API server draws them for `metadata.generateName`."""

from __future__ import annotations

import secrets

# k8s.io/apimachinery/pkg/util/rand: consonants and digits that cannot spell words or be confused.
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(n))

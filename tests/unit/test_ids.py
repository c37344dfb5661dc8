"""Identifiers made at the edge."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.ids import new_account_token, new_payload_id, token_digest


@given(
    st.integers(min_value=0, max_value=2**48 - 2),
    st.binary(min_size=10, max_size=10),
    st.binary(min_size=10, max_size=10),
)
def test_payload_ids_sort_by_time(millis: int, a: bytes, b: bytes) -> None:
    """A later millisecond always gives a greater id, whatever the random part."""
    earlier = new_payload_id(millis, a)
    later = new_payload_id(millis + 1, b)
    assert len(earlier) == len(later) == 26
    assert earlier < later


def test_tokens_are_random_and_stored_only_as_digests() -> None:
    """Two tokens differ; the digest is the SHA-256 hex and does not contain the token."""
    first, second = new_account_token(), new_account_token()
    assert first != second
    digest = token_digest(first)
    assert len(digest) == 64
    assert first not in digest

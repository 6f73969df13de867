"""The Merkle tree log: published RFC 6962 vectors, an independent naive implementation, properties over random
trees, the incremental structures, signed tree heads, and the export checked by the verifier printed in
docs/merkle-log.md."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from gateway.audit import merkle
from gateway.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Prover,
    SequenceSource,
    SignedTreeHead,
    TreeHead,
    TreeHeadInvalid,
    consistency_proof,
    export_lines,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.record import AccessRecord
from gateway.audit.record import leaf_hash as record_leaf_hash
from gateway.crypto import keys
from gateway.crypto.jws import sign_detached

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "rfc6962_merkle.json").read_text(encoding="utf-8"))
DOC = ROOT / "docs" / "merkle-log.md"

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")  # from the Go tests


def h(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


LEAVES = [leaf_hash(h(x)) for x in VECTORS["leaves"]]
ROOTS = [h(x) for x in VECTORS["roots"]]


# --- an independent implementation: RFC 9162 section 2.1 transcribed literally, recursive over slices ------------


def naive_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [naive_mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def naive_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return naive_subproof(m, d, True) if 0 < m < len(d) else []


def leaves(n: int, salt: str = "") -> list[bytes]:
    return [leaf_hash(f"{salt}entry-{i}".encode()) for i in range(n)]


def flip(value: bytes, position: int, mask: int = 1) -> bytes:
    changed = bytearray(value)
    changed[position % len(changed)] ^= mask
    return bytes(changed)


# --- published vectors ----------------------------------------------------------------------------------------------


def test_hasher_vectors() -> None:
    v = VECTORS["hasher"]
    assert root([]) == EMPTY_ROOT == h(v["empty_root"])
    assert leaf_hash(b"") == h(v["empty_leaf"]["hash"])
    assert leaf_hash(v["leaf"]["input_ascii"].encode()) == h(v["leaf"]["hash"])
    assert node_hash(v["node"]["left_ascii"].encode(), v["node"]["right_ascii"].encode()) == h(v["node"]["hash"])
    # the gateway's existing leaf hash (record.py) is the same function
    assert record_leaf_hash(b"L123456") == leaf_hash(b"L123456")


@pytest.mark.parametrize("size", range(1, 9))
def test_vector_roots(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size - 1]
    edge = CompactRange()
    edge.extend(LEAVES[:size])
    assert edge.root() == ROOTS[size - 1]
    assert Prover(SequenceSource(LEAVES), batch_level=0).root(size) == ROOTS[size - 1]


def corrupt_inclusion(index: int, size: int, proof: list[bytes], rt: bytes,
                      leaf: bytes) -> list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]]:
    """The probes of corruptInclusionProof in the source's proof/verify_test.go."""
    probes = [
        ("index - 1", (leaf, index - 1, size, proof, rt)),
        ("index + 1", (leaf, index + 1, size, proof, rt)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, rt)),
        ("size * 2", (leaf, index, size * 2, proof, rt)),
        ("size / 2", (leaf, index, size // 2, proof, rt)),
        ("wrong leaf", (b"WrongLeaf", index, size, proof, rt)),
        ("empty root", (leaf, index, size, proof, EMPTY_ROOT)),
        ("random root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing garbage", (leaf, index, size, [*proof, b""], rt)),
        ("trailing root", (leaf, index, size, [*proof, rt], rt)),
        ("preceding garbage", (leaf, index, size, [b"", *proof], rt)),
        ("preceding root", (leaf, index, size, [rt, *proof], rt)),
    ]
    for i in range(len(proof)):
        altered = [*proof[:i], flip(proof[i], 0, 8), *proof[i + 1:]]
        probes.append((f"proof[{i}] bit 3", (leaf, index, size, altered, rt)))
    if proof:
        probes.append(("removed component", (leaf, index, size, proof[:-1], rt)))
    if len(proof) > 1:
        probes.append(("inserted component", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], rt)))
    return probes


@pytest.mark.parametrize("vector", VECTORS["inclusion"], ids=lambda v: f"leaf{v['leaf']}-of-{v['size']}")
def test_vector_inclusion(vector: dict[str, Any]) -> None:
    index, size, proof = vector["leaf"] - 1, vector["size"], [h(p) for p in vector["proof"]]
    if index < 0:  # the source's {0, 0} entry: an invalid path
        assert not verify_inclusion(LEAVES[0], index, size, proof, EMPTY_ROOT)
        with pytest.raises(ValueError):
            inclusion_proof(LEAVES[:size], index)
        return
    leaf, rt = LEAVES[index], ROOTS[size - 1]
    assert inclusion_proof(LEAVES[:size], index) == proof
    assert verify_inclusion(leaf, index, size, proof, rt)
    for desc, args in corrupt_inclusion(index, size, proof, rt, leaf):
        assert not verify_inclusion(*args), desc


def corrupt_consistency(m: int, n: int, r1: bytes, r2: bytes,
                        proof: list[bytes]) -> list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]]:
    """The probes of corruptConsistencyProof in the source's proof/verify_test.go."""
    probes = [
        ("size1 - 1", (m - 1, n, r1, r2, proof)),
        ("size1 + 1", (m + 1, n, r1, r2, proof)),
        ("size1 ^ 2", (m ^ 2, n, r1, r2, proof)),
        ("size2 * 2", (m, n * 2, r1, r2, proof)),
        ("size2 / 2", (m, n // 2, r1, r2, proof)),
        ("wrong root1", (m, n, b"WrongRoot", r2, proof)),
        ("wrong root2", (m, n, r1, b"WrongRoot", proof)),
        ("swapped roots", (m, n, r2, r1, proof)),
        ("empty proof", (m, n, r1, r2, [])),
        ("trailing garbage", (m, n, r1, r2, [*proof, b""])),
        ("trailing root1", (m, n, r1, r2, [*proof, r1])),
        ("trailing root2", (m, n, r1, r2, [*proof, r2])),
        ("preceding garbage", (m, n, r1, r2, [b"", *proof])),
        ("preceding root1", (m, n, r1, r2, [r1, *proof])),
        ("preceding root2", (m, n, r1, r2, [r2, *proof])),
        ("preceding proof[0]", (m, n, r1, r2, [proof[0], *proof])),
        ("truncated proof", (m, n, r1, r2, proof[:-1])),
    ]
    for i in range(len(proof)):
        probes.append((f"proof[{i}] bit 4", (m, n, r1, r2, [*proof[:i], flip(proof[i], 0, 16), *proof[i + 1:]])))
    return probes


@pytest.mark.parametrize("vector", VECTORS["consistency"], ids=lambda v: f"{v['size1']}-to-{v['size2']}")
def test_vector_consistency(vector: dict[str, Any]) -> None:
    m, n, proof = vector["size1"], vector["size2"], [h(p) for p in vector["proof"]]
    r1, r2 = ROOTS[m - 1], ROOTS[n - 1]
    assert consistency_proof(LEAVES[:n], m) == proof
    assert verify_consistency(m, n, r1, r2, proof)
    if proof:  # as in the source: only non-trivial proofs are corrupted
        for desc, args in corrupt_consistency(m, n, r1, r2, proof):
            assert not verify_consistency(*args), desc


def test_edge_cases_of_the_source_tests() -> None:
    """TestVerifyInclusionSingleEntry, TestVerifyInclusion and TestVerifyConsistency's fixed cases. Where the
    source passes arbitrary non-hash roots for sizes that need no proof, real 32-byte roots are used: here a
    hash must be 32 bytes, and the root of size 0 must be the empty-tree hash."""
    one = leaf_hash(b"data")
    assert verify_inclusion(one, 0, 1, [], one)
    for lf, rt in ((one, b""), (b"", one), (b"", b"")):
        assert not verify_inclusion(lf, 0, 1, [], rt)
    for index, size in ((0, 0), (0, 1), (1, 0), (2, 1)):
        assert not verify_inclusion(SOME_HASH, index, size, [], b"")
        assert not verify_inclusion(b"", index, size, [], EMPTY_ROOT)
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)

    r1, r2 = leaf_hash(b"one"), root([leaf_hash(b"one"), leaf_hash(b"two")])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 1, EMPTY_ROOT, r1, [])
    assert verify_consistency(1, 1, r2, r2, [])
    assert not verify_consistency(1, 1, r1, r2, [])  # same size, different roots
    assert not verify_consistency(1, 0, r1, r2, [])  # time travel
    assert not verify_consistency(2, 1, r1, r2, [])
    assert not verify_consistency(1, 2, r1, r2, [])  # empty proof
    assert not verify_consistency(0, 0, EMPTY_ROOT, r2, [])
    assert not verify_consistency(1, 1, EMPTY_ROOT, r2, [])
    for m, n in ((0, 0), (0, 1), (1, 1)):  # roots fine, proof not empty
        assert not verify_consistency(m, n, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert not verify_consistency(0, 1, SOME_HASH, r1, [])  # stricter than the source: size 0 has one root


def test_b_ii_shifts_until_lsb_set_or_zero() -> None:
    """RFC 9162 2.1.3.2 b.ii shifts *until* LSB(fn) is set or fn is 0 — a loop some implementations get wrong.
    Sizes where the right edge is a lone leaf under several levels exercise it."""
    for n in (5, 9, 17, 33, 65, 129):
        d = leaves(n)
        for i in range(n):
            assert verify_inclusion(d[i], i, n, naive_path(i, d), naive_mth(d)), (i, n)


# --- properties against the naive implementation --------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 300))
def test_roots_agree(n: int) -> None:
    d = leaves(n)
    edge = CompactRange()
    edge.extend(d)
    assert root(d) == naive_mth(d) == edge.root() == Prover(SequenceSource(d), batch_level=2).root(n)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.data())
def test_inclusion_properties(n: int, data: st.DataObject) -> None:
    d = leaves(n)
    rt = naive_mth(d)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(d, index)
    assert proof == naive_path(index, d)
    assert len(proof) <= math.ceil(math.log2(n))
    assert verify_inclusion(d[index], index, n, proof, rt)
    # any single altered byte of the leaf, the root or a proof element fails
    position, mask = data.draw(st.integers(0, 31), label="byte"), data.draw(st.integers(1, 255), label="mask")
    assert not verify_inclusion(flip(d[index], position, mask), index, n, proof, rt)
    assert not verify_inclusion(d[index], index, n, proof, flip(rt, position, mask))
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        altered = [*proof[:k], flip(proof[k], position, mask), *proof[k + 1:]]
        assert not verify_inclusion(d[index], index, n, altered, rt)
    other = data.draw(st.integers(0, n), label="other index")
    if other != index:
        assert not verify_inclusion(d[index], other, n, proof, rt)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.data())
def test_consistency_properties(n: int, data: st.DataObject) -> None:
    d = leaves(n)
    m = data.draw(st.integers(0, n), label="old size")
    old, new = naive_mth(d[:m]), naive_mth(d)
    proof = consistency_proof(d, m)
    assert proof == naive_proof(m, d)
    assert len(proof) <= (math.ceil(math.log2(n)) + 1 if n > 1 else 0)  # one more than an inclusion proof at most
    assert verify_consistency(m, n, old, new, proof)
    position, mask = data.draw(st.integers(0, 31), label="byte"), data.draw(st.integers(1, 255), label="mask")
    assert not verify_consistency(m, n, flip(old, position, mask), new, proof)
    if m > 0:  # the empty tree is a prefix of every tree: from size 0 any new root is consistent
        assert not verify_consistency(m, n, old, flip(new, position, mask), proof)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        altered = [*proof[:k], flip(proof[k], position, mask), *proof[k + 1:]]
        assert not verify_consistency(m, n, old, new, altered)
    if 0 < m < n:
        assert not verify_consistency(m, n, old, naive_mth(leaves(n, salt="other")), proof)


def test_every_proof_of_small_trees() -> None:
    for n in range(0, 41):
        d = leaves(n)
        prover = Prover(SequenceSource(d), batch_level=1)
        new = naive_mth(d)
        for i in range(n):
            assert verify_inclusion(d[i], i, n, prover.inclusion_proof(i, n), new)
        for m in range(0, n + 1):
            assert verify_consistency(m, n, naive_mth(d[:m]), new, prover.consistency_proof(m, n)), (m, n)


@pytest.mark.parametrize("n", [127, 128, 129, 255, 256, 257, 300])
def test_every_proof_of_some_larger_trees(n: int) -> None:
    d = leaves(n)
    prover = Prover(SequenceSource(d), batch_level=3)
    new = naive_mth(d)
    for i in range(n):
        proof = prover.inclusion_proof(i, n)
        assert len(proof) <= math.ceil(math.log2(n)) and verify_inclusion(d[i], i, n, proof, new)
    for m in range(0, n + 1):
        proof = prover.consistency_proof(m, n)
        assert verify_consistency(m, n, naive_mth(d[:m]), new, proof), m
        if m % 17 == 0:
            assert proof == naive_proof(m, d)


def test_bad_arguments_are_refused() -> None:
    d = leaves(5)
    with pytest.raises(ValueError):
        inclusion_proof(d, 5)
    with pytest.raises(ValueError):
        consistency_proof(d, 6)
    with pytest.raises(ValueError):
        Prover(SequenceSource(d)).root(6)  # the source has fewer leaves than the tree
    assert not verify_inclusion(d[0], -1, 5, inclusion_proof(d, 0), root(d))


# --- the incremental structures ------------------------------------------------------------------------------------


class CountingSource:
    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.hashes, self.reads = hashes, 0

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        self.reads += end - start
        return self.hashes[start:end]


def test_compact_range_reports_final_subtrees_and_resumes() -> None:
    d = leaves(300)
    edge = CompactRange()
    completed = edge.extend(d[:200])
    prover = Prover(SequenceSource(d), batch_level=0)
    assert completed and all(node.hash == prover.subtree_hash(node.level, node.index) for node in completed)
    assert {(node.level, node.index) for node in completed} == {
        (lvl, i) for lvl in range(1, 9) for i in range(200 >> lvl)}
    assert len(edge.hashes) == bin(200).count("1")
    resumed = CompactRange(edge.size, edge.hashes)  # what a store persists
    resumed.extend(d[200:])
    assert resumed.root() == naive_mth(d)
    assert prover.compact_range(200).hashes == edge.hashes
    with pytest.raises(ValueError):
        CompactRange(200, edge.hashes[:-1])
    big = CompactRange(10**9, [SOME_HASH] * bin(10**9).count("1"))  # a billion entries: 13 hashes
    big.append(SOME_HASH)
    assert big.size == 10**9 + 1 and len(big.root()) == 32


def test_prover_memoises_perfect_subtrees_across_tree_sizes() -> None:
    d = leaves(1000)
    source = CountingSource(d)
    cache: dict[tuple[int, int], bytes] = {}
    prover = Prover(source, cache, batch_level=4)
    assert prover.root(1000) == naive_mth(d)
    first = source.reads
    assert first >= 1000
    source.reads = 0
    for i in (0, 499, 999):
        assert prover.inclusion_proof(i, 1000) == naive_path(i, d)
    assert prover.consistency_proof(600, 1000) == naive_proof(600, d)
    assert source.reads < 200, "proofs should come from cached subtrees, not from rereading the log"
    # everything cached is a perfect subtree, correct, and still valid for any larger tree
    assert all(lvl >= 4 for lvl, _ in cache)
    assert all(v == naive_mth(d[i << lvl:(i + 1) << lvl]) for (lvl, i), v in cache.items())
    assert Prover(CountingSource(d[:700]), cache, batch_level=4).inclusion_proof(3, 700) == naive_path(3, d[:700])


def test_a_store_can_fill_the_cache_at_append_time() -> None:
    d = leaves(257)
    edge, table = CompactRange(), {}
    for lf in d:
        for node in edge.append(lf):
            if node.level >= 4:
                table[(node.level, node.index)] = node.hash
    source = CountingSource(d)
    prover = Prover(source, table, batch_level=4)
    assert prover.root(257) == edge.root() == naive_mth(d)
    assert source.reads <= 1 + 16  # the odd leaf out, plus nothing above the cached level
    assert prover.inclusion_proof(100, 257) == naive_path(100, d)


def test_a_short_read_is_an_error_not_a_wrong_hash() -> None:
    class Short:
        def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
            return leaves(end)[start:end - 1]

    with pytest.raises(ValueError, match="did not return"):
        Prover(Short()).root(8)


# --- signed tree heads ---------------------------------------------------------------------------------------------


def test_tree_head_canonical_bytes_are_as_documented() -> None:
    head = TreeHead(tree_size=8, root_hash=ROOTS[7], timestamp_ms=1767225600000, log_id="anss-gateway.access")
    expected = (b'{"format":"anss-tree-head-v1","log_id":"anss-gateway.access",'
                b'"root_hash":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg","timestamp_ms":1767225600000,'
                b'"tree_size":8}')
    assert head.canonical() == expected
    as_json = {"format": "anss-tree-head-v1", "log_id": head.log_id, "root_hash": keys.b64url(head.root_hash),
               "timestamp_ms": head.timestamp_ms, "tree_size": head.tree_size}
    assert json.dumps(as_json, sort_keys=True, separators=(",", ":")).encode() == expected
    assert expected.decode() in DOC.read_text(encoding="utf-8").replace(
        '"<log_id>"', '"anss-gateway.access"').replace('"<base64url>"', '"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg"'
                                                       ).replace("<n>,", "1767225600000,").replace("<n>}", "8}")


@pytest.mark.parametrize("bad", [
    {"tree_size": -1}, {"tree_size": True}, {"tree_size": 2**63}, {"timestamp_ms": 1.5}, {"root_hash": b"short"},
    {"log_id": ""}, {"log_id": "has/slash"}, {"log_id": "é"}, {"tree_size": 0},
])
def test_tree_head_refuses_what_it_cannot_encode_canonically(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"tree_size": 8, "root_hash": ROOTS[7], "timestamp_ms": 1, "log_id": "log"} | bad
    with pytest.raises(ValueError):
        TreeHead(**fields)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_tree_head_signature(alg: str) -> None:
    key, other = keys.generate(alg), keys.generate(alg)
    head = TreeHead(8, ROOTS[7], 1767225600000, "anss-gateway.access")
    signed = head.sign(key)
    assert TreeHead.verify(signed, {key.kid: key.public}) == head
    # any JOSE library verifies it: the payload is detached, the header says what it is
    jwks: Any = keys.jwks([key])
    token = jws.deserialize_compact(signed.signature, KeySet.import_key_set(jwks),
                                    payload=head.canonical(), registry=JWSRegistry(algorithms=[alg]))
    assert token.protected == {"alg": alg, "kid": key.kid, "typ": "anss-tree-head-v1"}
    assert SignedTreeHead.from_json(json.loads(json.dumps(signed.to_json()))) == signed

    for changed in (TreeHead(7, ROOTS[6], head.timestamp_ms, head.log_id),
                    TreeHead(8, ROOTS[6], head.timestamp_ms, head.log_id),
                    TreeHead(8, ROOTS[7], head.timestamp_ms + 1, head.log_id),
                    TreeHead(8, ROOTS[7], head.timestamp_ms, "another-log")):
        with pytest.raises(TreeHeadInvalid):
            TreeHead.verify(SignedTreeHead(changed, signed.signature), {key.kid: key.public})
    with pytest.raises(TreeHeadInvalid, match="unknown kid"):
        TreeHead.verify(signed, {other.kid: other.public})
    # an answer signature over the same bytes is not a tree head signature
    answer = sign_detached(key, head.canonical(), request_id="r-1")
    with pytest.raises(TreeHeadInvalid, match="not over a tree head"):
        TreeHead.verify(SignedTreeHead(head, answer), {key.kid: key.public})


@pytest.mark.parametrize("mutate", [
    lambda d: d | {"root_hash": d["root_hash"] + "="},
    lambda d: d | {"root_hash": d["root_hash"][:-1] + "h"},  # non-canonical trailing bits
    lambda d: d | {"tree_size": 8.0},
    lambda d: d | {"type": "entry"},
    lambda d: {k: v for k, v in d.items() if k != "signature"},
])
def test_tree_head_lines_are_parsed_strictly(mutate: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    signed = TreeHead(8, ROOTS[7], 1, "log").sign(keys.generate())
    with pytest.raises(TreeHeadInvalid):
        SignedTreeHead.from_json(mutate(signed.to_json()))


# --- the export and the documented verifier ------------------------------------------------------------------------


def doc_verifier() -> Callable[[list[str], dict[str, Any]], tuple[int, bytes]]:
    text = DOC.read_text(encoding="utf-8")
    part = text[text.index("## 7. Reference verifier"):]
    match = re.search(r"```python\n(.*?)```", part, re.S)
    assert match, "no python block in section 7"
    code = match.group(1)
    assert sum(bool(x.strip()) for x in code.splitlines()) <= 60, "the reference verifier should stay short"
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the published verifier, as printed
    verify: Callable[[list[str], dict[str, Any]], tuple[int, bytes]] = namespace["verify_export"]
    return verify


VERIFY = doc_verifier()
KEY = keys.generate()
JWKS = keys.jwks([KEY])
LOG_ID = "anss-gateway.access"
HEAD_SIZES = (0, 5, 16, 37)


def record(i: int) -> bytes:
    return AccessRecord(
        time=f"2026-01-01T08:00:{i:02d}.000000Z", request_id=f"req-{i:04d}", method="POST", path="/v1/verifications",
        status=200 if i % 7 else 404, outcome="answered" if i % 7 else "subject_not_found", latency_ms=12.5 + i / 8,
        client="anss.asd", purpose="asd.eligibility", legal_basis="Loi n° 58-23 — décret d'application",
        case_ref=f"CASE-{i:04d}", checks=("identity", "household"), subject=hashlib.sha256(b"%d" % i).hexdigest(),
        sources=(("civil_registry", "ok"), ("education", "ok")), request_sha256="x" * 43, response_sha256="y" * 43,
        detail={"note": "ءاب"} if i == 3 else {},
    ).canonical()


ENTRIES = [record(i) for i in range(37)]


def heads_for(entries: Sequence[bytes], sizes: Sequence[int], key: keys.SigningKey = KEY) -> list[SignedTreeHead]:
    d = [leaf_hash(e) for e in entries]
    return [TreeHead(s, root(d[:s]), 1767225600000 + s, LOG_ID).sign(key) for s in sizes]


def export(**options: bool) -> list[str]:
    return list(export_lines(ENTRIES, heads_for(ENTRIES, HEAD_SIZES), **options))


def entry_line(lines: list[str], index: int) -> int:
    return next(n for n, line in enumerate(lines) if line.startswith(f'{{"type":"entry","index":{index},'))


def forged(index: int, entry: bytes) -> str:
    return f'{{"type":"entry","index":{index},"leaf_hash":"{keys.b64url(leaf_hash(entry))}","entry":{entry.decode()}}}'


def test_export_verifies_with_the_documented_verifier() -> None:
    lines = export()
    assert VERIFY(lines, JWKS) == (37, root([leaf_hash(e) for e in ENTRIES]))
    assert VERIFY(export(inclusion_proofs=False, consistency_proofs=False), JWKS)[0] == 37
    # the entry bytes are embedded verbatim, the header first, the heads in order
    assert json.loads(lines[0]) == {"type": "log", "format": "anss-access-log-export-v1", "log_id": LOG_ID}
    raw = lines[entry_line(lines, 3)].partition(',"entry":')[2][:-1].encode()
    assert raw == ENTRIES[3] and "ءاب" in raw.decode()
    assert [json.loads(x)["tree_size"] for x in lines if '"type":"tree_head"' in x] == list(HEAD_SIZES)


def test_export_proof_lines_verify_with_the_module() -> None:
    lines = [json.loads(x) for x in export()]
    heads = {x["tree_size"]: keys.b64url_decode(x["root_hash"]) for x in lines if x["type"] == "tree_head"}
    for x in lines:
        if x["type"] == "consistency":
            proof = [keys.b64url_decode(p) for p in x["proof"]]
            assert verify_consistency(x["old_size"], x["new_size"], heads[x["old_size"]], heads[x["new_size"]], proof)
        if x["type"] == "inclusion":
            proof = [keys.b64url_decode(p) for p in x["proof"]]
            assert verify_inclusion(leaf_hash(ENTRIES[x["index"]]), x["index"], 37, proof, heads[37])
    assert sum(x["type"] == "consistency" for x in lines) == len(HEAD_SIZES) - 1
    assert sum(x["type"] == "inclusion" for x in lines) == 37


def changed_byte(lines: list[str]) -> list[str]:
    n = entry_line(lines, 11)
    return [*lines[:n], lines[n].replace('"CASE-0011"', '"CASE-0012"'), *lines[n + 1:]]


def changed_byte_and_leaf_hash(lines: list[str]) -> list[str]:
    n = entry_line(lines, 11)
    return [*lines[:n], forged(11, ENTRIES[11].replace(b"CASE-0011", b"CASE-0012")), *lines[n + 1:]]


def deleted(lines: list[str]) -> list[str]:
    n = entry_line(lines, 11)
    return [*lines[:n], *lines[n + 1:]]


def deleted_and_renumbered(lines: list[str]) -> list[str]:
    out = deleted(lines)
    for i in range(12, 37):
        n = entry_line(out, i)
        out[n] = forged(i - 1, ENTRIES[i])
    return out


def swapped(lines: list[str]) -> list[str]:
    a, b = entry_line(lines, 11), entry_line(lines, 20)
    out = list(lines)
    out[a], out[b] = out[b], out[a]
    return out


def swapped_and_renumbered(lines: list[str]) -> list[str]:
    a, b = entry_line(lines, 11), entry_line(lines, 20)
    out = list(lines)
    out[a], out[b] = forged(11, ENTRIES[20]), forged(20, ENTRIES[11])
    return out


def inserted(lines: list[str]) -> list[str]:
    n = entry_line(lines, 11)
    return [*lines[:n], forged(11, record(99)), *lines[n:]]


def appended(lines: list[str]) -> list[str]:
    return [*lines, forged(37, record(99))]


def truncated(lines: list[str]) -> list[str]:
    """Entries 30.. dropped, the last tree head (size 37) kept."""
    n = entry_line(lines, 30)
    return [*lines[:n], *(x for x in lines[n:] if '"type":"tree_head"' in x or '"type":"consistency"' in x)]


@pytest.mark.parametrize(("tamper", "first_bad"), [
    (changed_byte, 11), (changed_byte_and_leaf_hash, 11), (deleted, 11), (deleted_and_renumbered, 11),
    (swapped, 11), (swapped_and_renumbered, 11), (inserted, 11), (appended, 37), (truncated, 30),
])
def test_tampered_export_is_rejected_naming_the_first_bad_entry(tamper: Callable[[list[str]], list[str]],
                                                                first_bad: int) -> None:
    with pytest.raises(ValueError, match=rf"^entry {first_bad}: "):
        VERIFY(tamper(export()), JWKS)


def test_without_inclusion_proofs_a_consistent_forgery_is_located_between_two_heads() -> None:
    lines = export(inclusion_proofs=False)
    with pytest.raises(ValueError, match=r"^entry 11: "):  # the naive change is still exact
        VERIFY(changed_byte(lines), JWKS)
    with pytest.raises(ValueError, match=r"^entry 5: entries 5\.\.15 do not match the signed tree head of size 16"):
        VERIFY(changed_byte_and_leaf_hash(lines), JWKS)


def test_tree_heads_that_do_not_verify_are_rejected() -> None:
    lines = export()
    last = max(n for n, x in enumerate(lines) if '"type":"tree_head"' in x)
    head = json.loads(lines[last])
    with pytest.raises(Exception):  # noqa: B017 - a JOSE error: the signature no longer covers the root
        VERIFY([*lines[:last], json.dumps(head | {"root_hash": keys.b64url(SOME_HASH)}), *lines[last + 1:]], JWKS)
    alien = heads_for(ENTRIES, HEAD_SIZES, keys.generate())
    with pytest.raises(Exception):  # noqa: B017 - unknown kid
        VERIFY(list(export_lines(ENTRIES, alien)), JWKS)
    # a second, validly signed head of size 16 over a different log: a fork
    fork = TreeHead(16, root(leaves(16)), 1, LOG_ID).sign(KEY)
    with pytest.raises(ValueError, match="two signed tree heads of size 16 disagree"):
        VERIFY([*lines, json.dumps(fork.to_json())], JWKS)
    with pytest.raises(ValueError, match="unknown line type"):
        VERIFY([*lines, '{"type":"comment"}'], JWKS)


def test_export_refuses_an_incoherent_request() -> None:
    heads = heads_for(ENTRIES, HEAD_SIZES)
    with pytest.raises(ValueError):
        export_lines(ENTRIES[:-1], heads)  # the last head must cover exactly the entries
    with pytest.raises(ValueError):
        export_lines(ENTRIES, [heads[2], heads[1], heads[3]])
    with pytest.raises(ValueError):
        export_lines(ENTRIES, [])
    with pytest.raises(ValueError):
        export_lines([b'{"a":1}\n'], heads_for([b'{"a":1}\n'], [1]))


def test_module_exports() -> None:
    assert set(merkle.__all__) <= set(dir(merkle))

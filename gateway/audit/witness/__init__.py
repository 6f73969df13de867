"""Witnesses of the access log (C2SP ``tlog-witness``): the witness service another body runs, and the gateway's
client of it.

- ``protocol``: the ``add-checkpoint`` wire format (pure);
- ``config``: the witness's TOML configuration and its own Ed25519 key;
- ``state``: what the witness holds per log, in its own SQLite file, checked and saved atomically;
- ``service``: judging submissions, cosigning, and the aiohttp app (``anss-gateway witness serve``);
- ``client``: submitting the gateway's checkpoints to configured witnesses and checking a quorum;
- ``guard``: the gateway's high-water checkpoint (a file outside the database), checked at start and before each
  head is signed, and the publication of each head as a checkpoint to the witnesses.

The protocol, configuration and the reference verification of cosignatures: docs/merkle-log.md, "Witnesses".
"""

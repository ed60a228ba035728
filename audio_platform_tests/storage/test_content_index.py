from concurrent.futures import ThreadPoolExecutor

from audio_platform.storage.content_index import ContentIndex

HASH = "ab" * 32


def test_first_claim_wins_and_owner_keeps_it(tmp_path):
    index = ContentIndex(tmp_path)
    assert index.owner(HASH) is None
    assert index.claim(HASH, "shard-1|a.wav") == "shard-1|a.wav"
    assert index.claim(HASH, "shard-2|b.wav") == "shard-1|a.wav"
    assert index.claim(HASH, "shard-1|a.wav") == "shard-1|a.wav"
    assert index.owner(HASH) == "shard-1|a.wav"


def test_racing_claimants_agree_on_one_owner(tmp_path):
    index = ContentIndex(tmp_path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        owners = list(pool.map(lambda i: index.claim(HASH, f"claimant-{i}"), range(64)))
    assert len(set(owners)) == 1
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()], "temp claim files must be removed"

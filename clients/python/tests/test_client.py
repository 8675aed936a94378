"""The Python client against a real server."""

import numpy as np
import pytest

from annal import AnnalError, encode_vector


def vectors(n, d=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_numpy_upsert_search_and_batched_search(server):
    db, _, _ = server
    db.create_index("docs", dimension=16, distance="l2")
    data = vectors(2500)
    ids = [f"v{i}" for i in range(len(data))]
    meta = [{"n": i} for i in range(len(data))]
    last = db.upsert("docs", ids, data, metadata=meta, batch_size=1000)
    assert last["applied"] is True and db.get_index("docs")["length"] == 2500
    hits = db.search("docs", data[42], k=3)
    assert hits[0]["id"] == "v42" and hits[0]["distance"] == 0.0, "float32 in, the same float32 stored"
    assert hits[0]["metadata"] == {"n": 42}
    batch = db.search_batch("docs", data[:20], k=5)
    assert len(batch) == 20
    for row, results in zip(data[:20], batch):
        assert results == db.search("docs", row, k=5)
    ids_, distances = db.ids_and_distances(hits)
    assert ids_[0] == "v42" and distances.dtype == np.float32


def test_durable_writes_and_min_seq(server):
    db, _, _ = server
    db.create_index("docs", dimension=16)
    data = vectors(300, seed=1)
    answer = db.upsert("docs", [f"v{i}" for i in range(300)], data, wait="durable", batch_size=100)
    assert answer["applied"] is False
    hits = db.search("docs", data[7], k=1, min_seq=answer["seq"])
    assert hits[0]["id"] == "v7"
    info = db.get_index("docs", min_seq=answer["seq"])
    assert info["applied_seq"] >= answer["seq"]


def test_errors_are_raised_with_the_servers_error_and_detail(server):
    db, _, _ = server
    db.create_index("docs", dimension=4)
    with pytest.raises(AnnalError) as e:
        db.create_index("docs", dimension=4)
    assert e.value.status == 409 and e.value.error
    with pytest.raises(AnnalError) as e:
        db.upsert("docs", ["a"], [[1, 2, 3]])
    assert e.value.status == 400 and e.value.detail.startswith("items[0].vector")
    with pytest.raises(ValueError):
        db.upsert("docs", ["a"], vectors(2, d=4))
    with pytest.raises(AnnalError) as e:
        db.search("nope", [1, 2, 3, 4])
    assert e.value.status == 404
    with pytest.raises(AnnalError) as e:
        db.search("docs", [1, 2, 3, 4], min_seq=10**9)
    assert e.value.status == 400 and "min_seq" in e.value.detail


def test_encode_vector_is_little_endian_float32():
    assert encode_vector([1.0]) == "AACAPw=="


def test_partitions_migration_trials_and_promotion(server):
    db, _, _ = server
    db.create_index("docs", dimension=16, distance="l2")
    db.set_scheme("docs", "tenant={tenant}")
    data = vectors(400, seed=2)
    meta = [{"tenant": f"t{i % 2}", "year": 2020 + i % 3} for i in range(400)]
    db.upsert("docs", [f"v{i}" for i in range(400)], data, metadata=meta)
    hits = db.search("docs", data[3], k=5, partition="tenant=t1")
    assert hits and all(h["partition"] == "tenant=t1" for h in hits)
    plan = db.migrate("docs", "tenant={tenant}/year={year}", dry_run=True)
    assert plan["dry_run"] and plan["moved"] == 400
    done = db.migrate("docs", "tenant={tenant}/year={year}", batch_size=50)
    assert done["moved"] == 400 and done["version"] == 2
    assert db.partitions("docs")["count"] == 6
    with pytest.raises(AnnalError) as e:
        db.migrate("docs", "year={year}")
    assert e.value.status == 409
    db.clear_migration("docs")

    evals = db.create_eval("docs", k=5, sample=20, seed=3)
    trial = db.run_trial("docs", evals["eval_id"], m=16, ef_construction=40, ef_search=32)
    assert 0 < trial["recall"] <= 1
    assert db.best_trial("docs", recall_min=0.0)["trial_id"] == trial["trial_id"]
    promoted = db.promote("docs", 16, 40, 32, trial_id=trial["trial_id"], note="measured")
    assert promoted["current"]["promoted_by"] == "pytest"
    assert db.promotions()["count"] == 1
    assert db.rollback("docs")["current"] is None
    assert db.snapshot()["seq"] > 0 and db.log()["last_seq"] > 0
    assert db.cluster()["clustered"] is False and db.cluster()["last_seq"] == db.log()["last_seq"]


def test_quantized_storage_at_creation_in_trials_promotions_and_a_budgeted_autotune(server):
    db, _, _ = server
    created = db.create_index("small", dimension=16, distance="l2", storage="sq8", refine=4)
    assert (created["params"]["storage"], created["params"]["refine"]) == ("sq8", 4)
    data = vectors(1500, seed=5)
    db.upsert("small", [f"v{i}" for i in range(1500)], data)
    assert db.search("small", data[7], k=3)[0]["id"] == "v7"
    with pytest.raises(AnnalError) as e:
        db.create_index("bad", dimension=16, storage="pq", pq_m=5)
    assert e.value.status == 400 and "pq_m" in str(e.value)
    evals = db.create_eval("small", k=5, sample=20, seed=3)
    trial = db.run_trial("small", evals["eval_id"], m=16, ef_construction=40, ef_search=32, storage="sq4",
                         refine=4)
    assert trial["storage"] == "sq4" and trial["refine"] == 4 and trial["bytes_per_vector"] > 0
    promoted = db.promote("small", 16, 40, 32, storage="fp16", note="half the bytes")
    assert promoted["current"]["storage"] == "fp16"
    tuned = db.autotune("small", evals["eval_id"], 0.5, max_bytes_per_vector=150)
    assert {"flat", "fp16", "sq8", "sq4"} & {t["storage"] for t in tuned["trials"]} >= {"sq8", "sq4"}, tuned
    chosen = next(t for t in tuned["trials"] if t["trial_id"] == tuned["chosen"])
    assert chosen["bytes_per_vector"] <= 150 and chosen["recall"] >= 0.5, chosen
    assert tuned["promoted"]["storage"] == chosen["storage"]


def test_every_documented_route_has_a_client_method():
    """docs/OPERATIONS.md's route table against the client's source, method and path: a
    new route must reach the client too."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[3]
    doc = (root / "docs" / "OPERATIONS.md").read_text()
    table = doc.split("\n## HTTP API\n")[1].split("\n## ")[0]
    source = (root / "clients" / "python" / "annal" / "__init__.py").read_text()
    rows = re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`", table, re.M)
    assert len(rows) >= 30, f"the route table was not found: {rows}"
    missing = []
    for method, path in rows:
        if path.endswith("/objects/"):
            continue  # the empty-key rows document a 400, not a route of their own
        # The client writes `{name}` and friends as f-string fields.
        escaped = re.escape(path).replace(r"\{", "{").replace(r"\}", "}").replace(r"\*", "")
        pattern = re.sub(r"\{[^}]+\}", "{[a-z_]+}", escaped)
        via_call = rf'"{method}", f?"{pattern}"'
        via_session = rf"session\.{method.lower()}\(\s*f?\"(\{{self\.url\}})?{pattern}"
        if not re.search(via_call, source) and not re.search(via_session, source):
            missing.append(f"{method} {path}")
    assert not missing, f"routes without a client method: {missing}"


def test_object_keys_are_sent_encoded(server):
    db, _, _ = server
    db.put_object("primary", "reports/q?v=2 %41", b"hello")
    assert db.get_object("primary", "reports/q?v=2 %41") == b"hello"
    keys = [o["key"] for o in db.list_objects("primary", prefix="reports")["objects"]]
    assert keys == ["reports/q?v=2 %41"]
    db.delete_object("primary", "reports/q?v=2 %41")


def test_an_evaluation_set_of_supplied_numpy_queries(server):
    db, _, _ = server
    db.create_index("docs", dimension=16)
    data = vectors(200, seed=5)
    db.upsert("docs", [f"v{i}" for i in range(200)], data)
    created = db.create_eval("docs", k=5, vectors=data[:10] + 0.01)
    assert created["queries"] == 10 and not created["sampled"]


def test_rows_base64_splits_one_block_exactly_like_per_row_encoding():
    from annal import _rows_base64, encode_vector

    rng = np.random.default_rng(7)
    for dimension in (384, 3, 5, 1):  # row bytes a multiple of 3, and not
        matrix = rng.standard_normal((17, dimension)).astype("<f4")
        assert [v.decode("ascii") for v in _rows_base64(matrix)] == [encode_vector(row) for row in matrix]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_failed_batch_reports_exactly_the_batches_that_committed(server, concurrency):
    db, _, _ = server
    db.create_index("docs", dimension=16, distance="l2")
    data = vectors(5000, seed=3)
    data[2500, 4] = np.nan  # the third batch of 1,000 is refused whole
    ids = [f"v{i}" for i in range(len(data))]
    with pytest.raises(AnnalError) as e:
        db.upsert("docs", ids, data, batch_size=1000, wait="durable", concurrency=concurrency)
    assert e.value.status == 400 and "items[500].vector" in e.value.detail
    ranges = e.value.committed_ranges
    assert (2000, 3000) not in ranges and {(0, 1000), (1000, 2000)} <= set(ranges)
    if concurrency == 1:
        assert ranges == [(0, 1000), (1000, 2000)], "one request in flight: nothing after the failure is sent"
    assert e.value.committed == sum(end - start for start, end in ranges)
    info = db.get_index("docs", min_seq=e.value.last_seq)
    assert info["length"] == e.value.committed
    for start, end in ranges:
        assert db.search("docs", data[start], k=1)[0]["id"] == f"v{start}"


def test_concurrent_upsert_stores_every_row_and_refuses_repeated_ids(server):
    db, _, _ = server
    db.create_index("docs", dimension=16, distance="l2")
    data = vectors(3500, seed=4)
    ids = [f"v{i}" for i in range(len(data))]
    last = db.upsert("docs", ids, data, batch_size=500, wait="durable", concurrency=3)
    assert db.get_index("docs", min_seq=last["seq"])["length"] == 3500
    for i in (0, 499, 500, 3499):
        assert db.search("docs", data[i], k=1)[0] == {**db.search("docs", data[i], k=1)[0], "id": f"v{i}", "distance": 0.0}
    with pytest.raises(ValueError, match="ids repeat"):
        db.upsert("docs", ["a", "a"], vectors(2), concurrency=2)


def test_documents_are_embedded_and_searched_by_text(server):
    db, _, _ = server
    db.create_index("notes", embedder="all-MiniLM-L6-v2")
    texts = [
        "Lists are mutable sequences, typically used to store collections of homogeneous items.",
        "Tuples are immutable sequences.",
        "The with statement wraps the execution of a block with methods defined by a context manager.",
    ]
    db.upsert_documents("notes", ["l", "t", "w"], texts, metadata=[{"n": 0}, None, {"n": 2}])
    written = db.upsert_documents("notes", ["t2"], ["Tuples are immutable, too."], wait="durable")
    info = db.wait_embedded("notes", timeout=300, min_seq=written["seq"])
    assert info["available"] is True and info["documents"] == 4
    assert info["report"]["incremental_processed"] == 4 and info["queue"]["parked"] == 0
    hits = db.search_text("notes", "a context manager and the with statement", k=2)
    assert hits[0]["id"] == "w" and hits[0]["text"] == texts[2] and hits[0]["metadata"] == {"n": 2}
    lists = db.search_texts("notes", ["immutable tuple", "mutable list"], k=1)
    assert lists[0][0]["id"] in ("t", "t2") and lists[1][0]["id"] == "l"
    with pytest.raises(AnnalError) as e:
        db.set_embedder("notes", "no-such-model")
    assert e.value.status == 400 and "model" in e.value.detail
    with pytest.raises(AnnalError) as e:
        db.upsert_documents("notes", ["x"], [""])
    assert e.value.status == 400 and e.value.detail.startswith("items[0].text")


def test_keyword_and_hybrid_search_find_exact_identifiers(server):
    db, _, _ = server
    db.create_index("man", embedder="all-MiniLM-L6-v2", text={"fields": ["title"]})
    db.create_index("dense_only", embedder="all-MiniLM-L6-v2", text={"enabled": False})
    texts = [
        "A thread with CAP_SYS_NICE may raise its scheduling priority.",
        "FAN_REPORT_DIR_FID reports the directory of an event.",
        "mount attaches the filesystem found on some device to the tree.",
    ]
    metadata = [{"title": "capabilities"}, {"title": "fanotify_init"}, {"title": "mount"}]
    written = db.upsert_documents("man", ["nice", "fan", "mount"], texts, metadata=metadata)
    hits = db.search_keyword("man", "FAN_REPORT_DIR_FID", k=2)
    assert hits[0]["id"] == "fan" and hits[0]["score"] > 0 and hits[0]["text"] == texts[1]
    assert db.search_keyword("man", "fanotify_init")[0]["id"] == "fan"
    assert db.search_keyword("man", "title:mount", syntax=True)[0]["id"] == "mount"
    db.wait_embedded("man", timeout=300, min_seq=written["seq"])
    fused = db.search_hybrid("man", "CAP_SYS_NICE priority", k=3, scores=True)
    assert fused[0]["id"] == "nice" and fused[0]["keyword"]["rank"] == 1
    # The passage holds every word of the query: full coverage, so it leads.
    assert fused[0]["keyword"]["coverage"] == pytest.approx(1.0)
    assert "distance" in fused[0]["dense"]
    rrf = db.search_hybrid("man", "CAP_SYS_NICE priority", k=3, fusion="rrf", rrf_k=10)
    assert rrf[0]["id"] == "nice"
    weighted = db.search_hybrid("man", "filesystem", k=1, fusion="weighted", alpha=0.0)
    assert weighted[0]["id"] == "mount"
    assert db.get_index("man")["text"]["fields"] == ["title"]
    for call, field in (
        (lambda: db.search_keyword("man", ""), "text"),
        (lambda: db.search_keyword("man", "a:(", syntax=True), "text"),
        (lambda: db.search_text("man", "x", mode="fuzzy"), "mode"),
        (lambda: db.search_hybrid("man", "x", fusion="weighted", alpha=2.0), "alpha"),
        (lambda: db.search_hybrid("man", "x", fusion="adaptive", alpha=0.5), "alpha"),
        (lambda: db.search_hybrid("man", "x", fusion="borda"), "fusion"),
        (lambda: db.search_keyword("dense_only", "x"), "mode"),
    ):
        with pytest.raises(AnnalError) as e:
            call()
        assert e.value.status == 400 and e.value.detail.startswith(field), e.value.detail


def test_events_are_read_back_with_their_fields(server):
    db, _, _ = server
    db.create_index("ev", dimension=2, distance="l2")
    db.upsert("ev", ["a"], [[0.25, 0.5]])
    answer = db.events(from_seq=1, limit=10, vectors=True)
    kinds = [e["kind"] for e in answer["events"]]
    assert kinds[-2:] == ["IndexCreated", "VectorsUpserted"] and answer["last_seq"] >= 2
    assert answer["events"][-1]["body"]["items"][0]["vector"] == [0.25, 0.5]
    assert answer["events"][-1]["actor"] == "pytest"


def test_a_token_names_the_actor_and_a_read_token_may_not_write(auth_server):
    from annal import Client
    from conftest import READER_SECRET

    db, _, _ = auth_server
    assert "w-0123" not in repr(db), "the token never shows"
    db.create_index("sec", dimension=2, distance="l2")
    db.upsert("sec", ["a"], [[1.0, 0.0]])
    actors = [e["actor"] for e in db.events(from_seq=1, limit=10)["events"]]
    assert actors[-2:] == ["ingest", "ingest"], "the token's name, not actor='pytest'"
    reader = Client(db.url, token=READER_SECRET)
    assert reader.search("sec", [1.0, 0.0], k=1)[0]["id"] == "a"
    with pytest.raises(AnnalError) as refused:
        reader.upsert("sec", ["b"], [[0.0, 1.0]])
    assert refused.value.status == 403 and refused.value.error == "forbidden"
    with pytest.raises(AnnalError) as anonymous:
        Client(db.url, token="").list_indexes()
    assert anonymous.value.status == 401


def test_metadata_filters_payload_indexes_items_count_and_delete_by_filter(server):
    db, _, _ = server
    db.create_index("docs", dimension=16, distance="l2")
    data = vectors(300, seed=3)
    meta = [{"tenant": f"t{i % 3}", "year": 2000 + i % 30, "tags": ["a", f"b{i % 2}"]} for i in range(300)]
    db.upsert("docs", [f"v{i:03}" for i in range(300)], data, metadata=meta)
    db.create_payload_index("docs", "tenant", "keyword")
    db.create_payload_index("docs", "year", "integer")
    assert [p["field"] for p in db.payload_indexes("docs")] == ["tenant", "year"]
    where = {"tenant": "t1", "year": {"$gte": 2010}, "tags": {"$contains": "b1"}}
    expected = [i for i in range(300) if i % 3 == 1 and 2000 + i % 30 >= 2010 and i % 2 == 1]
    assert db.count("docs", filter=where) == len(expected)
    hits = db.search("docs", data[expected[0]], k=5, filter=where)
    assert hits[0]["id"] == f"v{expected[0]:03}" and all(h["metadata"]["tenant"] == "t1" for h in hits)
    plan = db.explain("docs", data[0], k=5, filter=where)["explain"]
    assert plan["strategy"] == "exact" and plan["estimate"] == len(expected) and "tenant" in plan["indexed"]
    assert [r["id"] for r in db.scroll("docs", filter=where, page_size=7)] == [f"v{i:03}" for i in expected]
    got = db.get_items("docs", ["v001", "nope"], include=["vector"])
    assert got["missing"] == ["nope"] and len(got["items"][0]["vector"]) == 16
    db.patch_metadata("docs", "v001", {"tenant": "t9", "tags": None})
    assert db.get_item("docs", "v001")["metadata"] == {"tenant": "t9", "year": 2001}
    db.set_metadata("docs", {"v002": {"tenant": "t9"}})
    assert db.count("docs", filter={"tenant": "t9"}) == 2
    with pytest.raises(AnnalError) as e:
        db.count("docs", filter={"$and": [{"tenant": "t1"}, {"year": {"$gt": "soon"}}]})
    assert e.value.status == 400 and e.value.detail.startswith("filter.$and[1].year.$gt")
    with pytest.raises(AnnalError) as e:
        db.search("docs", data[0], filter={"tenant": {"$gt": 1}})
    assert e.value.status == 400 and "payload index of type keyword" in e.value.detail
    gone = db.delete("docs", filter={"tenant": "t9"})
    assert gone["deleted"] == 2 and db.count("docs") == 298
    assert db.count("docs", filter={"tenant": "t9"}, as_of=gone["seq"] - 1) == 2
    db.drop_payload_index("docs", "year")
    assert db.count("docs", filter={"year": {"$lt": 2001}}) == 10, "unindexed fields still filter"


def test_get_items_asks_in_requests_the_server_takes_and_drop_index_may_find_nothing(server):
    db, _, _ = server
    db.create_index("many", dimension=4)
    ids = [f"r{i}" for i in range(1_500)]
    db.upsert("many", ids, np.random.default_rng(1).normal(size=(1_500, 4)).astype(np.float32))
    # 1,501 ids: more than one request's 1,000.
    found = db.get_items("many", ids + ["absent"])
    assert sorted(i["id"] for i in found["items"]) == sorted(ids)
    assert found["missing"] == ["absent"]
    db.drop_index("many")
    assert db.drop_index("many", missing_ok=True) is None
    with pytest.raises(AnnalError) as missing:
        db.drop_index("many")
    assert missing.value.is_missing_index("many")

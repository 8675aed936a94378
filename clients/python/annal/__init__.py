"""Python client for annal's HTTP API.

>>> from annal import Client
>>> db = Client("http://127.0.0.1:7700")
>>> db.create_index("docs", dimension=384)
>>> db.upsert("docs", ids, vectors)            # numpy (n, d) float array or lists
>>> db.search("docs", query, k=10)             # [{"id", "distance", "metadata", ...}]

Vectors travel as base64 of little-endian float32 (no decimal JSON), upserts are
batched, and every error of the server is raised as `AnnalError` with its `status`,
`error` and `detail`.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import requests

__all__ = ["Client", "AnnalError", "encode_vector"]


class AnnalError(Exception):
    """An error answer of the server: HTTP `status`, its `error` code and `detail`."""

    def __init__(self, status: int, error: str, detail: str, body: Any = None):
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.body = body


def encode_vector(vector: Any) -> str:
    """One vector as the API's base64 of little-endian float32."""
    array = np.ascontiguousarray(np.asarray(vector, dtype="<f4")).reshape(-1)
    return base64.b64encode(array.tobytes()).decode("ascii")


def _matrix(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype="<f4")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(f"vectors must be a (n, d) array, got shape {array.shape}")
    return np.ascontiguousarray(array)


class Client:
    """A connection to one annal server."""

    def __init__(self, url: str = "http://127.0.0.1:7700", actor: Optional[str] = None, timeout: float = 300.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if actor is not None:
            self.session.headers["x-annal-actor"] = actor

    # -- plumbing --------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, params: Optional[dict] = None,
              retries: int = 0) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        response = self.session.request(method, self.url + path, json=body, params=params, timeout=self.timeout)
        # A read waiting for its min_seq answers 503 with Retry-After while the server
        # applies: wait as told, a bounded number of times.
        while response.status_code == 503 and retries > 0 and "retry-after" in response.headers:
            retries -= 1
            time.sleep(float(response.headers["retry-after"]))
            response = self.session.request(method, self.url + path, json=body, params=params, timeout=self.timeout)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            payload = payload or {}
            raise AnnalError(
                response.status_code,
                str(payload.get("error", "")),
                str(payload.get("detail", response.text)),
                payload,
            )
        return payload

    # -- indexes ---------------------------------------------------------------------

    def create_index(
        self,
        name: str,
        dimension: int,
        distance: str = "cosine",
        m: Optional[int] = None,
        ef_construction: Optional[int] = None,
        ef_search: Optional[int] = None,
    ) -> dict:
        body = {"name": name, "dimension": dimension, "distance": distance}
        for key, value in (("m", m), ("ef_construction", ef_construction), ("ef_search", ef_search)):
            if value is not None:
                body[key] = value
        return self._call("POST", "/vectors/index", body)

    def list_indexes(self, as_of: Optional[int] = None, min_seq: Optional[int] = None) -> list:
        return self._call("GET", "/vectors/index", params={"as_of": as_of, "min_seq": min_seq})["names"]

    def get_index(self, name: str, as_of: Optional[int] = None, min_seq: Optional[int] = None,
                  retries: int = 60) -> dict:
        """An index's params, length, and `applied_seq`/`last_seq`. With `min_seq`, the
        server waits for that event (10 s per try); `retries` more tries follow its
        Retry-After."""
        params = {"as_of": as_of, "min_seq": min_seq}
        return self._call("GET", f"/vectors/index/{name}", params=params, retries=retries if min_seq else 0)

    def drop_index(self, name: str) -> dict:
        return self._call("DELETE", f"/vectors/index/{name}")

    # -- writes ----------------------------------------------------------------------

    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Any,
        metadata: Optional[Sequence[Any]] = None,
        partitions: Optional[Sequence[Optional[str]]] = None,
        batch_size: int = 1000,
        wait: str = "applied",
        progress: bool = False,
    ) -> dict:
        """Insert or replace `ids` with the rows of `vectors` (an (n, d) array or lists),
        `batch_size` per request. Each batch is all or nothing; the batches before a
        failed one stay written: the raised `AnnalError` carries `committed` (how many
        records) and `last_seq` (the last written batch's event, or None). Returns the
        last batch's answer (`seq` is the last event's)."""
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of ids, not one string")
        matrix = _matrix(vectors)
        if len(ids) != matrix.shape[0]:
            raise ValueError(f"{len(ids)} ids for {matrix.shape[0]} vectors")
        bar = None
        if progress:
            from tqdm import tqdm  # optional dependency: pip install annal-client[progress]

            bar = tqdm(total=len(ids), unit="vec")
        last: dict = {}
        try:
            for start in range(0, len(ids), batch_size):
                end = min(start + batch_size, len(ids))
                items = []
                for i in range(start, end):
                    item = {"id": ids[i], "vector": base64.b64encode(matrix[i].tobytes()).decode("ascii")}
                    if metadata is not None and metadata[i] is not None:
                        item["metadata"] = metadata[i]
                    if partitions is not None and partitions[i] is not None:
                        item["partition"] = partitions[i]
                    items.append(item)
                try:
                    last = self._call("POST", f"/vectors/index/{name}/add", {"items": items, "wait": wait})
                except AnnalError as error:
                    error.committed = start
                    error.last_seq = last.get("seq")
                    raise
                if bar is not None:
                    bar.update(end - start)
        finally:
            if bar is not None:
                bar.close()
        return last

    def delete(self, name: str, ids: Sequence[str], wait: str = "applied") -> dict:
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of ids, not one string")
        return self._call("POST", f"/vectors/index/{name}/delete", {"ids": list(ids), "wait": wait})

    # -- reads -----------------------------------------------------------------------

    def search(
        self,
        name: str,
        vector: Any,
        k: int = 10,
        partition: Optional[str] = None,
        as_of: Optional[int] = None,
        min_seq: Optional[int] = None,
    ) -> list:
        """The `k` nearest records to `vector`: dicts with `id`, `distance` (smaller is
        closer), and `metadata`/`partition` when set."""
        body: dict = {"vector": encode_vector(vector), "k": k}
        if partition is not None:
            body["partition"] = partition
        params = {"as_of": as_of, "min_seq": min_seq}
        retries = 60 if min_seq else 0
        return self._call("POST", f"/vectors/index/{name}/search", body, params, retries=retries)["results"]

    def search_batch(
        self,
        name: str,
        vectors: Any,
        k: int = 10,
        partition: Optional[str] = None,
        as_of: Optional[int] = None,
        min_seq: Optional[int] = None,
    ) -> list:
        """One result list per row of `vectors` (searched together, on all cores)."""
        matrix = _matrix(vectors)
        body: dict = {"vectors": [base64.b64encode(row.tobytes()).decode("ascii") for row in matrix], "k": k}
        if partition is not None:
            body["partition"] = partition
        params = {"as_of": as_of, "min_seq": min_seq}
        retries = 60 if min_seq else 0
        return self._call("POST", f"/vectors/index/{name}/search", body, params, retries=retries)["results"]

    @staticmethod
    def ids_and_distances(results: list) -> tuple:
        """A search's results as (ids list, float32 distances array)."""
        return [r["id"] for r in results], np.asarray([r["distance"] for r in results], dtype=np.float32)

    # -- promotions, trials ----------------------------------------------------------

    def promote(self, name: str, m: int, ef_construction: int, ef_search: int, trial_id: str = "",
                promoted_by: Optional[str] = None, note: str = "") -> dict:
        body = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search, "trial_id": trial_id,
                "note": note}
        if promoted_by is not None:
            body["promoted_by"] = promoted_by
        return self._call("POST", f"/vectors/index/{name}/promote", body)

    def rollback(self, name: str) -> dict:
        return self._call("POST", f"/vectors/index/{name}/rollback", {})

    def promotion(self, name: str) -> dict:
        return self._call("GET", f"/vectors/index/{name}/promotion")

    def promotions(self) -> dict:
        return self._call("GET", "/vectors/promotions")

    def job(self, job_id: int) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def wait_job(self, started: dict, poll: float = 0.1, timeout: float = 3600.0) -> dict:
        """Poll a job started by a 202 answer until it ends; its result, or AnnalError
        with the job's error."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(started["job_id"])
            if job["status"] == "succeeded":
                return job["result"]
            if job["status"] == "failed":
                error = job.get("error") or {}
                raise AnnalError(int(error.get("status", 500)), "job_failed", str(error.get("detail", "")), job)
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {started['job_id']} still running")
            time.sleep(poll)

    def create_eval(self, name: str, k: int = 10, sample: Optional[int] = None, seed: int = 0,
                    vectors: Any = None, eval_id: Optional[str] = None) -> dict:
        body: dict = {"k": k}
        if eval_id is not None:
            body["eval_id"] = eval_id
        if vectors is not None:
            body["vectors"] = [base64.b64encode(row.tobytes()).decode("ascii") for row in _matrix(vectors)]
        elif sample is not None:
            body["sample"] = {"count": sample, "seed": seed}
        return self.wait_job(self._call("POST", f"/vectors/index/{name}/evals", body))

    def run_trial(self, name: str, eval_id: str, m: int, ef_construction: int, ef_search: int,
                  trial_id: Optional[str] = None) -> dict:
        body = {"eval_id": eval_id, "m": m, "ef_construction": ef_construction, "ef_search": ef_search}
        if trial_id is not None:
            body["trial_id"] = trial_id
        return self.wait_job(self._call("POST", f"/vectors/index/{name}/trials", body))

    def trials(self, name: str) -> dict:
        return self._call("GET", f"/vectors/index/{name}/trials")

    def best_trial(self, name: str, recall_min: Optional[float] = None, p99_max_us: Optional[int] = None,
                   eval_id: Optional[str] = None) -> Optional[dict]:
        if (recall_min is None) == (p99_max_us is None):
            raise ValueError("give recall_min (fastest over it) or p99_max_us (best recall under it)")
        params = {"objective": "latency" if recall_min is not None else "recall", "recall_min": recall_min,
                  "p99_max_us": p99_max_us, "eval_id": eval_id}
        return self._call("GET", f"/vectors/index/{name}/trials/best", params=params)["best"]

    def autotune(self, name: str, eval_id: str, recall_floor: float) -> dict:
        body = {"eval_id": eval_id, "recall_floor": recall_floor}
        return self.wait_job(self._call("POST", f"/vectors/index/{name}/autotune", body))

    # -- partitions ------------------------------------------------------------------

    def set_scheme(self, name: str, template: str) -> dict:
        return self._call("POST", f"/vectors/index/{name}/scheme", {"template": template})

    def migrate(self, name: str, template: str, dry_run: bool = False, batch_size: Optional[int] = None,
                take_snapshot_first: bool = True) -> dict:
        body: dict = {"template": template, "dry_run": dry_run, "take_snapshot_first": take_snapshot_first}
        if batch_size is not None:
            body["batch_size"] = batch_size
        return self.wait_job(self._call("POST", f"/vectors/index/{name}/migrate", body))

    def migration(self, name: str) -> dict:
        return self._call("GET", f"/vectors/index/{name}/migration")

    def clear_migration(self, name: str) -> dict:
        return self._call("DELETE", f"/vectors/index/{name}/migration")

    def partitions(self, name: str) -> dict:
        return self._call("GET", f"/vectors/index/{name}/partitions")

    # -- operations ------------------------------------------------------------------

    def snapshot(self) -> dict:
        return self._call("POST", "/admin/snapshots", {})

    def snapshots(self) -> dict:
        return self._call("GET", "/admin/snapshots")

    def log(self) -> dict:
        return self._call("GET", "/admin/log")

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def ready(self) -> bool:
        try:
            self._call("GET", "/readyz")
            return True
        except AnnalError:
            return False

    def metrics(self) -> str:
        response = self.session.get(f"{self.url}/metrics", timeout=self.timeout)
        self._raise_for(response)
        return response.text

    def openapi(self) -> dict:
        """The server's OpenAPI 3.1 description."""
        return self._call("GET", "/openapi.json")

    # -- buckets ---------------------------------------------------------------------

    def buckets(self) -> list:
        return self._call("GET", "/storage/buckets")["buckets"]

    def probe(self, bucket: str) -> dict:
        return self._call("POST", f"/storage/buckets/{bucket}/probe", {})

    def list_objects(self, bucket: str, prefix: Optional[str] = None) -> dict:
        return self._call("GET", f"/storage/buckets/{bucket}/objects", params={"prefix": prefix})

    @staticmethod
    def _raise_for(response: Any) -> None:
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {}
            raise AnnalError(response.status_code, str(payload.get("error", "")),
                             str(payload.get("detail", response.text)), payload)

    def get_object(self, bucket: str, key: str) -> bytes:
        key = urllib.parse.quote(key, safe="/")
        response = self.session.get(f"{self.url}/storage/buckets/{bucket}/objects/{key}", timeout=self.timeout)
        self._raise_for(response)
        return response.content

    def put_object(self, bucket: str, key: str, data: bytes) -> dict:
        key = urllib.parse.quote(key, safe="/")
        response = self.session.put(
            f"{self.url}/storage/buckets/{bucket}/objects/{key}",
            data=data,
            headers={"content-type": "application/octet-stream"},
            timeout=self.timeout,
        )
        self._raise_for(response)
        return response.json()

    def delete_object(self, bucket: str, key: str) -> dict:
        key = urllib.parse.quote(key, safe="/")
        return self._call("DELETE", f"/storage/buckets/{bucket}/objects/{key}")

    def bucket_errors(self, limit: int = 100, bucket: Optional[str] = None, op: Optional[str] = None) -> list:
        params = {"limit": limit, "bucket": bucket, "op": op}
        return self._call("GET", "/storage/errors", params=params)["errors"]

    def bucket_health(self, minutes: int = 60) -> dict:
        return self._call("GET", "/storage/bucket-health", params={"minutes": minutes})

"""The typed API over refineryd's gRPC services (see refinery_client)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Union

import grpc
import numpy as np

from refinery_client.proto.refinery.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from refinery_client.proto.refinery.v1 import index_pb2, index_pb2_grpc, job_pb2, job_pb2_grpc
from refinery_client.proto.refinery.v1 import model_pb2, model_pb2_grpc

ImageInput = Union[bytes, str, os.PathLike]

_FINISHED = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}


class RefineryError(Exception):
    """A call the server refused or that failed: `code` is the gRPC status
    code's name ("NOT_FOUND", "INVALID_ARGUMENT", ...), `message` the
    server's explanation, which names the offending item."""

    def __init__(self, code: str, message: str, method: str = ""):
        super().__init__(f"{method + ': ' if method else ''}{code}: {message}")
        self.code = code
        self.message = message
        self.method = method


def _read_file(path: Union[str, os.PathLike], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise RefineryError("INVALID_ARGUMENT", f"{what} {path}: {e.strerror}") from None


def _image(item: ImageInput, i: int) -> common_pb2.Image:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return common_pb2.Image(data=bytes(item), name=f"images[{i}]")
    return common_pb2.Image(data=_read_file(item, "image"), name=os.fspath(item))


def _matrix(m: common_pb2.Matrix) -> np.ndarray:
    return np.asarray(m.values, dtype=np.float32).reshape(m.rows, m.dim)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Client:
    """A connection to refineryd.

    address: "host:port". token: sent as `authorization: Bearer TOKEN` (default
    $REFINERY_TOKEN). tls: True for TLS with the system's CAs, or a CA file
    (PEM) to trust; cert/key: a client certificate for mutual TLS. timeout:
    seconds per unary call (watch() has none).
    """

    def __init__(self, address: str = "127.0.0.1:50051", *, token: Optional[str] = None,
                 tls: Union[bool, str, os.PathLike] = False, cert: Optional[str] = None,
                 key: Optional[str] = None, server_name: Optional[str] = None, timeout: float = 120.0,
                 max_message_mb: int = 64):
        self.address = address
        self.timeout = timeout
        token = token if token is not None else os.environ.get("REFINERY_TOKEN")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", max_message_mb << 20),
                   ("grpc.max_send_message_length", max_message_mb << 20)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls or cert:
            root = None if tls is True or not tls else _read_file(tls, "CA file")
            chain = _read_file(cert, "certificate") if cert else None
            private = _read_file(key, "key") if key else None
            creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=private,
                                                 certificate_chain=chain)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self.embedding = embedding_pb2_grpc.EmbeddingServiceStub(self._channel)
        self.models_service = model_pb2_grpc.ModelServiceStub(self._channel)
        self.indexes = index_pb2_grpc.IndexServiceStub(self._channel)
        self.jobs_service = job_pb2_grpc.JobServiceStub(self._channel)

    # -- plumbing ----------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, name: str):
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise RefineryError(e.code().name, e.details() or "", name) from None

    # -- models ------------------------------------------------------------
    def health(self) -> bool:
        """True when the server answers (its model list, which every role may read)."""
        try:
            self._call(self.models_service.ListModels, model_pb2.ListModelsRequest(), "ListModels")
            return True
        except RefineryError as e:
            if e.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                return False
            raise

    def models(self) -> List[model_pb2.ModelInfo]:
        return list(self._call(self.models_service.ListModels, model_pb2.ListModelsRequest(), "ListModels").models)

    def model(self, model: str = "") -> model_pb2.ModelInfo:
        return self._call(self.models_service.GetModel, model_pb2.GetModelRequest(model=model), "GetModel")

    # -- embeddings --------------------------------------------------------
    def embed_texts(self, texts: Sequence[str], *, model: str = "", normalize: bool = True,
                    batch_size: int = 256) -> np.ndarray:
        """float32 [len(texts), D]; rows L2-normalised unless normalize=False.
        Long lists go in calls of batch_size (the server batches across calls)."""
        if isinstance(texts, str):
            raise TypeError("embed_texts takes a list of strings; wrap a single text in a list")
        parts = []
        for chunk in _chunks(list(texts), batch_size):
            out = self._call(self.embedding.EmbedText,
                             embedding_pb2.EmbedTextRequest(model=model, texts=chunk, normalize=normalize), "EmbedText")
            parts.append(_matrix(out.embeddings))
            model = out.model  # later chunks use the version the first resolved to
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def embed_images(self, images: Sequence[ImageInput], *, model: str = "", normalize: bool = True,
                     batch_size: int = 32) -> np.ndarray:
        """float32 [len(images), D] for encoded images (bytes) or image files (paths)."""
        parts = []
        items = list(images)
        for start in range(0, len(items), batch_size):
            chunk = [_image(x, start + i) for i, x in enumerate(items[start:start + batch_size])]
            out = self._call(self.embedding.EmbedImage,
                             embedding_pb2.EmbedImageRequest(model=model, images=chunk, normalize=normalize),
                             "EmbedImage")
            parts.append(_matrix(out.embeddings))
            model = out.model
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def classify(self, images: Sequence[ImageInput], labels: Sequence[str], *, model: str = "",
                 templates: Optional[Sequence[str]] = None, top_k: int = 0) -> List[List[Dict]]:
        """For each image, its labels best first: [{"label", "probability", "cosine", "index"}]."""
        request = embedding_pb2.ClassifyRequest(model=model, images=[_image(x, i) for i, x in enumerate(images)],
                                                labels=list(labels), templates=list(templates or []), top_k=top_k)
        out = self._call(self.embedding.Classify, request, "Classify")
        return [[{"label": s.label, "probability": s.probability, "cosine": s.cosine, "index": s.index}
                 for s in r.labels] for r in out.results]

    # -- vector indexes ------------------------------------------------------
    def create_index(self, name: str, *, model: str = "", kind: str = "flat") -> index_pb2.IndexInfo:
        kinds = {"flat": index_pb2.INDEX_KIND_FLAT, "ivf": index_pb2.INDEX_KIND_IVF, "hnsw": index_pb2.INDEX_KIND_HNSW}
        if kind not in kinds:
            raise ValueError(f"kind must be one of {sorted(kinds)}, not {kind!r}")
        request = index_pb2.CreateIndexRequest(name=name, model=model, options=index_pb2.IndexOptions(kind=kinds[kind]))
        return self._call(self.indexes.CreateIndex, request, "CreateIndex")

    def add_to_index(self, index: str, *, texts: Optional[Dict[str, str]] = None,
                     images: Optional[Dict[str, ImageInput]] = None,
                     vectors: Optional[Dict[str, Iterable[float]]] = None, upsert: bool = False) -> int:
        """Adds {id: text}, {id: image} and {id: precomputed embedding}; returns
        the index's size once the change is durable on the server."""
        items = [index_pb2.IndexItem(id=k, text=v) for k, v in (texts or {}).items()]
        items += [index_pb2.IndexItem(id=k, image=_image(v, i)) for i, (k, v) in enumerate((images or {}).items())]
        items += [index_pb2.IndexItem(id=k, vector=common_pb2.Vector(values=[float(x) for x in v]))
                  for k, v in (vectors or {}).items()]
        out = self._call(self.indexes.AddItems, index_pb2.AddItemsRequest(index=index, items=items, upsert=upsert),
                         "AddItems")
        return out.size

    def search(self, index: str, *, text: Optional[str] = None, image: Optional[ImageInput] = None,
               vector: Optional[Iterable[float]] = None, k: int = 10) -> List[Dict]:
        """The k nearest items, best first: [{"id", "score", "metadata_json"}]. Give one query."""
        given = [q is not None for q in (text, image, vector)]
        if sum(given) != 1:
            raise ValueError("search takes exactly one of text=, image= or vector=")
        request = index_pb2.SearchRequest(index=index, k=k)
        if text is not None:
            request.text = text
        elif image is not None:
            request.image.CopyFrom(_image(image, 0))
        else:
            request.vector.values.extend(float(v) for v in vector)
        out = self._call(self.indexes.Search, request, "Search")
        return [{"id": h.id, "score": h.score, "metadata_json": h.metadata_json} for h in out.hits]

    # -- jobs ------------------------------------------------------------------
    def submit_job(self, base: str, data: str, *, name: str = "", method: str = "", request_id: str = "",
                   **options) -> job_pb2.Job:
        """Queues a CLIP-Refine job on `base` with the data set spec `data`
        (coco:ANN.json:IMAGES, csv:FILE, jsonl:FILE, on the server's disk).
        Other JobSpec fields go as keywords: epochs=1, batch_size=64, lr=1e-6, ..."""
        spec = job_pb2.JobSpec(base_model=base, data=data, name=name, method=method)
        for key, value in options.items():
            if key not in job_pb2.JobSpec.DESCRIPTOR.fields_by_name:
                raise TypeError(f"submit_job: JobSpec has no field {key!r}")
            if key == "extra":
                spec.extra.update({str(k): str(v) for k, v in value.items()})
            else:
                setattr(spec, key, value)
        return self._call(self.jobs_service.SubmitJob,
                          job_pb2.SubmitJobRequest(spec=spec, client_request_id=request_id), "SubmitJob")

    def job(self, job_id: str) -> job_pb2.Job:
        return self._call(self.jobs_service.GetJob, job_pb2.GetJobRequest(id=job_id), "GetJob")

    def jobs(self) -> List[job_pb2.Job]:
        return list(self._call(self.jobs_service.ListJobs, job_pb2.ListJobsRequest(), "ListJobs").jobs)

    def cancel_job(self, job_id: str) -> job_pb2.Job:
        return self._call(self.jobs_service.CancelJob, job_pb2.CancelJobRequest(id=job_id), "CancelJob")

    def watch(self, job_id: str, from_seq: int = 0) -> Iterator[job_pb2.JobEvent]:
        """The job's events (replayed from from_seq, then live) until it ends.
        A dropped connection is resumed from the last event seen."""
        next_seq = from_seq
        while True:
            stream = self.jobs_service.WatchJob(job_pb2.WatchJobRequest(id=job_id, from_seq=next_seq),
                                                metadata=self._metadata)
            try:
                for event in stream:
                    next_seq = event.seq + 1
                    yield event
                    if event.HasField("state") and event.state.state in _FINISHED:
                        return
                return  # the stream ended: the job has ended
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise RefineryError(e.code().name, e.details() or "", "WatchJob") from None
                # The server restarted or the connection dropped: reconnect
                # after the last event seen, once a second.
                time.sleep(1.0)

"""refinery_client against a real refineryd (started here) with the tiny
fixture model. Environment: REFINERYD (the binary), REFINERY_FIXTURE (the
clip-tiny fixture folder). Run: python3 -m unittest discover -s tests."""
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from refinery_client import Client, RefineryError  # noqa: E402
from refinery_client.proto.refinery.v1 import job_pb2  # noqa: E402

FIXTURE = Path(os.environ.get("REFINERY_FIXTURE", "../shared/fixtures/clip-tiny"))
TOKEN = "python-client-admin-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_safetensors(path):
    """{name: numpy array} of a safetensors file (F32 tensors), read independently of Refinery."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__" or e["dtype"] != "F32":
            continue
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(e["shape"])
    return out


def unit_rows(m):
    return m / np.linalg.norm(m, axis=1, keepdims=True)


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = Path(tempfile.mkdtemp(prefix="refinery-py-"))
        (cls.work / "models").mkdir()
        shutil.copy(FIXTURE / "tiny.safetensors", cls.work / "models" / "tiny.safetensors")
        (cls.work / "tokens").write_text(f"{TOKEN} admin python-tests\n")
        cls.address = f"127.0.0.1:{free_port()}"
        cls.log = open(cls.work / "server.log", "wb")
        cls.server = subprocess.Popen(
            [os.environ["REFINERYD"], "--listen", cls.address, "--metrics-listen", "", "--models-dir",
             str(cls.work / "models"), "--data-dir", str(cls.work / "data"), "--data-root", str(cls.work),
             "--device", "cpu", "--threads", "2", "--auth-tokens", str(cls.work / "tokens")],
            stdout=cls.log, stderr=subprocess.STDOUT)
        cls.client = Client(cls.address, token=TOKEN, timeout=60)
        deadline = time.time() + 60
        while not cls.client.health():
            if cls.server.poll() is not None or time.time() > deadline:
                raise RuntimeError("refineryd did not start:\n" + (cls.work / "server.log").read_text())
            time.sleep(0.2)
        cls.reference = read_safetensors(FIXTURE / "reference.safetensors")
        cls.texts = json.loads((FIXTURE / "texts.json").read_text())
        cls.images = sorted((FIXTURE / "images").iterdir())

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.terminate()
        cls.server.wait(timeout=60)
        cls.log.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_text_embeddings_match_the_reference_implementation(self):
        e = self.client.embed_texts(self.texts[:20], model="tiny", batch_size=8)  # three calls
        self.assertEqual(e.dtype, np.float32)
        self.assertEqual(e.shape, (20, 32))
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
        reference = unit_rows(self.reference["text_features"][:20])
        cosines = np.sum(e * reference, axis=1)
        self.assertGreater(cosines.min(), 0.99999, cosines)
        raw = self.client.embed_texts(self.texts[:2], normalize=False)
        np.testing.assert_allclose(raw, self.reference["text_features"][:2], rtol=1e-3, atol=1e-4)

    def test_image_embeddings_from_paths_and_bytes_match_the_reference(self):
        from_paths = self.client.embed_images(self.images, batch_size=4)
        from_bytes = self.client.embed_images([p.read_bytes() for p in self.images], batch_size=4)
        self.assertEqual(from_paths.shape, (len(self.images), 32))
        np.testing.assert_array_equal(from_paths, from_bytes)
        cosines = np.sum(from_paths * unit_rows(self.reference["image_features"]), axis=1)
        self.assertGreater(cosines.min(), 0.9995, cosines)

    def test_classify_ranks_every_label(self):
        results = self.client.classify(self.images[:2], ["cat", "rocket", "coffee"])
        self.assertEqual(len(results), 2)
        for labels in results:
            p = [x["probability"] for x in labels]
            self.assertEqual(sorted(x["label"] for x in labels), ["cat", "coffee", "rocket"])
            self.assertEqual(p, sorted(p, reverse=True))
            self.assertAlmostEqual(sum(p), 1.0, places=4)

    def test_search_finds_the_indexed_text(self):
        self.client.create_index("py-texts")
        size = self.client.add_to_index("py-texts", texts={f"t{i}": t for i, t in enumerate(self.texts[:30])})
        self.assertEqual(size, 30)
        hits = self.client.search("py-texts", text=self.texts[7], k=3)
        self.assertEqual(hits[0]["id"], "t7")
        self.assertGreater(hits[0]["score"], 0.9999)
        vector = self.client.embed_texts([self.texts[7]])[0]
        self.assertEqual(self.client.search("py-texts", vector=vector, k=1)[0]["id"], "t7")
        # A precomputed embedding is added as it is.
        other = self.client.embed_texts([self.texts[40]])[0]
        self.assertEqual(self.client.add_to_index("py-texts", vectors={"v40": other}), 31)
        self.assertEqual(self.client.search("py-texts", text=self.texts[40], k=1)[0]["id"], "v40")

    def test_errors_name_the_offending_item(self):
        with self.assertRaises(RefineryError) as e:
            self.client.embed_texts(["x"], model="no-such-model")
        self.assertEqual(e.exception.code, "NOT_FOUND")
        self.assertIn("no-such-model", e.exception.message)
        anonymous = Client(self.address, token="")
        with self.assertRaises(RefineryError) as e:
            anonymous.embed_texts(["x"])
        self.assertEqual(e.exception.code, "UNAUTHENTICATED")
        anonymous.close()
        with self.assertRaises(RefineryError) as e:
            self.client.embed_images([self.work / "missing.png"])
        self.assertIn("missing.png", str(e.exception))

    def test_a_job_submitted_and_watched_to_its_end(self):
        data = self.work / "captions.csv"
        images = self.work / "images"
        images.mkdir(exist_ok=True)
        for p in self.images[:8]:
            shutil.copy(p, images / p.name)
        data.write_text("\n".join(["filepath,caption"] + [f"images/{p.name},a photo of a {p.stem}"
                                                          for p in self.images[:8]]) + "\n")
        job = self.client.submit_job("tiny", f"csv:{data}", batch_size=2, max_steps=3, val_fraction=0.25,
                                     lr=1e-4, name="tiny-py")
        self.assertEqual(job.state, job_pb2.JOB_STATE_QUEUED)
        events = list(self.client.watch(job.id))
        self.assertEqual([e.seq for e in events], list(range(1, len(events) + 1)))
        states = [e.state.state for e in events if e.HasField("state")]
        self.assertEqual(states[0], job_pb2.JOB_STATE_QUEUED)
        self.assertEqual(states[-1], job_pb2.JOB_STATE_SUCCEEDED)
        steps = [e.step.step for e in events if e.HasField("step")]
        self.assertEqual(steps, [1, 2, 3])
        self.assertTrue(all(np.isfinite(e.step.loss) for e in events if e.HasField("step")))
        self.assertIn("tiny-py@1", [m.ref for m in self.client.models()])
        with self.assertRaises(TypeError):
            self.client.submit_job("tiny", "csv:x", no_such_option=1)


if __name__ == "__main__":
    unittest.main()

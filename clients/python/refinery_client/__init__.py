"""Python client for Refinery: embeddings as numpy arrays, zero-shot
classification, vector search and CLIP-Refine jobs over gRPC.

    from refinery_client import Client
    with Client("127.0.0.1:50051", token=None) as c:
        e = c.embed_texts(["a photo of a cat"], model="tiny")   # numpy float32 [1, D], unit rows
        for event in c.watch(c.submit_job("tiny", "csv:/data/train.csv").id):
            print(event)

The generated stubs and messages are in refinery_client.proto.refinery.v1.
"""
from refinery_client.client import Client, RefineryError

__all__ = ["Client", "RefineryError"]
__version__ = "0.1.0"
